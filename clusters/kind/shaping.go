package kind

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/edgefault/edgefault/shaper"
)

// NodeTarget is where a node container's traffic is shaped: its eth0,
// inside its network namespace, with the host side of its veth as the
// peer (so its egress is impaired at the host side's ingress, as on the
// embedded fleet). Impairments given Targets (the cloud's address) then
// act on the node's cloud-bound traffic only, never on its kubelet's path
// to the API server, or the node would go NotReady and its pods be
// evicted, which is not the fault simulated.
func NodeTarget(ctx context.Context, container string) (shaper.Target, error) {
	pid, err := ContainerPID(ctx, container)
	if err != nil {
		return shaper.Target{}, err
	}
	out, err := docker(ctx, nil, "exec", container, "cat", "/sys/class/net/eth0/iflink")
	if err != nil {
		return shaper.Target{}, err
	}
	idx, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return shaper.Target{}, fmt.Errorf("%s: eth0's peer index %q: %w", container, out, err)
	}
	host, err := net.InterfaceByIndex(idx)
	if err != nil {
		return shaper.Target{}, fmt.Errorf("%s: the host side of eth0 (index %d): %w", container, idx, err)
	}
	return shaper.Target{
		Link: shaper.Link{Netns: fmt.Sprintf("/proc/%d/ns/net", pid), Name: "eth0"},
		Peer: &shaper.Link{Name: host.Name},
	}, nil
}
