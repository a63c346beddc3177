package kind

import (
	"context"
	"fmt"
	"net"
	"regexp"
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
	return LinkTarget(ctx, container, "eth0")
}

// LinkTarget is where a container's link is shaped: the link inside the
// container's network namespace, with the host side of its veth as the
// peer.
func LinkTarget(ctx context.Context, container, link string) (shaper.Target, error) {
	if !linkNameRE.MatchString(link) {
		return shaper.Target{}, fmt.Errorf("link name %q", link)
	}
	pid, err := ContainerPID(ctx, container)
	if err != nil {
		return shaper.Target{}, err
	}
	out, err := docker(ctx, nil, "exec", container, "cat", "/sys/class/net/"+link+"/iflink")
	if err != nil {
		return shaper.Target{}, err
	}
	idx, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return shaper.Target{}, fmt.Errorf("%s: %s's peer index %q: %w", container, link, out, err)
	}
	host, err := net.InterfaceByIndex(idx)
	if err != nil {
		return shaper.Target{}, fmt.Errorf("%s: the host side of %s (index %d): %w", container, link, idx, err)
	}
	return shaper.Target{
		Link: shaper.Link{Netns: fmt.Sprintf("/proc/%d/ns/net", pid), Name: link},
		Peer: &shaper.Link{Name: host.Name},
	}, nil
}

var linkNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
