package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PodsKey is the ConfigMap's key listing, comma-separated, the pods the
// run may impair, each NAMESPACE/NAME=IP (the harness reads the IP from
// the API; the agent, which may read nothing but the run's objects,
// trusts the ConfigMap for it).
const PodsKey = "pods"

// parsePods reads PodsKey's value; entries that do not parse are skipped
// (and named), so one bad entry does not stop the others.
func parsePods(s string) (map[string]netip.Addr, []string) {
	pods := map[string]netip.Addr{}
	var bad []string
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		key, ip, ok := strings.Cut(e, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil || !a.Is4() || ValidPod(key) != nil {
			bad = append(bad, e)
			continue
		}
		pods[key] = a
	}
	return pods, bad
}

// ValidPod checks NAMESPACE/NAME: a namespace is a DNS label, a pod's
// name a DNS subdomain, as the API server has them.
func ValidPod(key string) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return fmt.Errorf("pod %q: want NAMESPACE/NAME", key)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("pod %q: namespace: %s", key, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("pod %q: name: %s", key, strings.Join(errs, "; "))
	}
	return nil
}

// hostVeth finds the host side of the veth a pod at addr is reached
// through, in the namespace of uplink (the node's): the link the route to
// addr leaves by (a routed CNI: kindnet, Calico), which must carry a host
// route to addr, or behind a
// bridge (flannel's cni0, the bridge plugin) the bridge port addr's MAC
// was learned on. It refuses an address reached over the uplink: that pod
// is on another node.
func hostVeth(uplink shaper.Link, addr netip.Addr) (name string, index int, err error) {
	h := &netlink.Handle{}
	if p := uplink.NetnsPath(); p != "" {
		ns, err := netns.GetFromPath(p)
		if err != nil {
			return "", 0, fmt.Errorf("open %s: %w", p, err)
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return "", 0, fmt.Errorf("netlink in %s: %w", p, err)
		}
		defer h.Close()
	}
	rs, err := h.RouteGet(net.IP(addr.AsSlice()))
	if err != nil || len(rs) == 0 {
		return "", 0, fmt.Errorf("no route to %s on this node: %v", addr, err)
	}
	l, err := h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return "", 0, fmt.Errorf("the link of the route to %s: %w", addr, err)
	}
	br := l
	if l.Attrs().Name == uplink.Name {
		return "", 0, fmt.Errorf("%s is reached over the uplink %s: the pod is not on this node", addr, uplink.Name)
	}
	if _, ok := l.(*netlink.Bridge); ok {
		if l, err = bridgePort(h, l, addr); err != nil && errors.Is(err, errNoNeighbour) {
			// A pod that has not talked to its node: one datagram to its
			// discard port makes the node resolve its MAC.
			poke(uplink, addr)
			for i := 0; i < 50 && errors.Is(err, errNoNeighbour); i++ {
				time.Sleep(20 * time.Millisecond)
				l, err = bridgePort(h, br, addr)
			}
		}
		if err != nil {
			return "", 0, err
		}
	}
	if l.Type() != "veth" {
		return "", 0, fmt.Errorf("%s is reached through %s, a %s, not a pod's veth: this CNI's pods cannot be shaped from the node", addr, l.Attrs().Name, l.Type())
	}
	if l.Attrs().Index == rs[0].LinkIndex {
		// Routed: the pod's own veth carries a host route to it; a veth
		// that carries a whole range (Cilium's cilium_host) is every
		// pod's, and is refused.
		// Every table: a CNI may keep pods' routes in one of its own.
		own, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			err = nil // routes changed meanwhile: what was read is judged
		}
		if err != nil {
			return "", 0, fmt.Errorf("routes of %s: %w", l.Attrs().Name, err)
		}
		if !slices.ContainsFunc(own, func(rt netlink.Route) bool {
			ones, bits := 0, 0
			if rt.Dst != nil {
				ones, bits = rt.Dst.Mask.Size()
			}
			return rt.Dst != nil && ones == bits && rt.Dst.IP.Equal(net.IP(addr.AsSlice()))
		}) {
			return "", 0, fmt.Errorf("%s is reached through %s, which carries no host route to it: a link shared by several pods (this CNI's pods cannot be shaped one by one from the node)", addr, l.Attrs().Name)
		}
	}
	return l.Attrs().Name, l.Attrs().Index, nil
}

// bridgePort is the port of bridge br that addr's MAC (its neighbour
// entry on the bridge) was learned on.
func bridgePort(h *netlink.Handle, br netlink.Link, addr netip.Addr) (netlink.Link, error) {
	ns, err := h.NeighList(br.Attrs().Index, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("neighbours on %s: %w", br.Attrs().Name, err)
	}
	var mac net.HardwareAddr
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr && len(n.HardwareAddr) > 0 {
			mac = n.HardwareAddr
		}
	}
	if mac == nil {
		return nil, fmt.Errorf("%s is behind bridge %s: %w", addr, br.Attrs().Name, errNoNeighbour)
	}
	fdb, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("the bridges' forwarding entries: %w", err)
	}
	for _, n := range fdb {
		if n.MasterIndex == br.Attrs().Index && n.HardwareAddr.String() == mac.String() {
			return h.LinkByIndex(n.LinkIndex)
		}
	}
	return nil, fmt.Errorf("%s (%s) is not in bridge %s's forwarding entries: the pod has not sent through it lately", addr, mac, br.Attrs().Name)
}

var errNoNeighbour = errors.New("no neighbour entry for it there (the node could not resolve its MAC address: is the pod running?)")

// poke sends one datagram to addr's discard port from the node's
// namespace, so the node resolves addr's MAC.
func poke(uplink shaper.Link, addr netip.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := nsdo.DialContext(uplink.NetnsPath())(ctx, "udp4", netip.AddrPortFrom(addr, 9).String())
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte{0})
}

// podSide turns an impairment as the pod sees it (up: what the pod sends)
// into one on the host side of its veth, where directions are reversed.
// Targets would be too (the pod's destinations are the host side's
// sources), so they are refused: a pod's impairment is on all its traffic.
func podSide(imp shaper.Impairment) (shaper.Impairment, error) {
	if len(imp.Targets) > 0 {
		return imp, errors.New("a pod's impairment applies to all its traffic: targets are for the uplink")
	}
	h := imp
	h.UpRate, h.DownRate = imp.DownRate, imp.UpRate
	switch imp.Direction {
	case shaper.Egress:
		h.Direction = shaper.Ingress
	case shaper.Ingress:
		h.Direction = shaper.Egress
	}
	return h, nil
}
