// Package netns is the embedded fleet: every node, gateway and the cloud
// is a Linux network namespace on this machine, joined by bridges in a
// per-fleet fabric namespace.
//
// Layout of fleet F (all names visible to `ip netns`):
//
//	F-fabric    the wires: bridge "wan" (the cloud and every gateway's WAN
//	            leg) and one bridge "lanN" per site; every member's cable
//	            ends here in a port named after it (ip link alias)
//	F-cloud     the fleet's services; eth0 on the WAN, 100.64.0.1/10
//	F-<gateway> lan0 on its site LAN, wan0 on the WAN; forwards and
//	            masquerades what leaves on wan0, as a real router does
//	F-<node>    eth0 on its site LAN; default route via its building's
//	            gateway, and the other gateways of its site on-link
//
// Nothing of a fleet lives in the host's namespace, so a fleet cannot
// disturb the machine's own networking and two fleets run side by side with
// the same addresses. The harness reaches every member by entering its
// namespace (the management path), never through the shaped links.
//
// Shaping acts on the fabric side of each cable (see package shaper): a
// gateway's uplink is its WAN leg, a node's link is its LAN leg.
package netns
