package kind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
)

// A site on kind reaches the cloud as a site of the embedded fleet does:
// through its gateway. The cloud sits on a WAN network of its own; a
// gateway is a router container with a leg on the site's kind network and
// one on the WAN, masquerading; a node's route to the WAN goes through the
// gateway while its path to its API server stays on the kind network. A
// step on a gateway shapes its WAN leg: the whole site behind it, shared.

// labelCluster marks the containers that belong to a cluster (its cloud,
// its gateways): Delete removes them before the cluster's network.
const labelCluster = "io.edgefault.cluster"

// WAN is a Docker network standing for the internet between the sites and
// the cloud.
type WAN struct {
	Name   string
	Subnet netip.Prefix
}

var dockerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CreateWAN makes (recorded first) the Docker network name.
func (c *Clusters) CreateWAN(ctx context.Context, name string) (*WAN, error) {
	if !dockerNameRE.MatchString(name) {
		return nil, fmt.Errorf("WAN network name %q: use 1-63 lower-case letters, digits and '-'", name)
	}
	if _, err := docker(ctx, nil, "network", "inspect", name); err == nil {
		return nil, fmt.Errorf("docker network %s already exists: 'edgefault cleanup' if edgefault made it, else 'docker network rm %s'", name, name)
	}
	if err := c.ledger.Record(c.owner, ledger.Entry{Kind: KindNetwork, Name: name, Time: time.Now()}); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, nil, "network", "create", "--driver", "bridge", "--label", "io.edgefault.owner="+c.owner, name); err != nil {
		return nil, err
	}
	out, err := docker(ctx, nil, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", name)
	if err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(string(out)) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			return &WAN{Name: name, Subnet: p}, nil
		}
	}
	return nil, fmt.Errorf("docker network %s has no IPv4 subnet (%q)", name, out)
}

// RemoveWAN removes the WAN network (its containers first).
func (c *Clusters) RemoveWAN(ctx context.Context, w *WAN) error {
	if err := removeNetwork(ctx, w.Name); err != nil {
		return err
	}
	return c.ledger.Forget(c.owner, ledger.Entry{Kind: KindNetwork, Name: w.Name})
}

// GatewaySpec is a site's router to the WAN.
type GatewaySpec struct {
	// Name is the gateway's name; its container is <cluster>-gw-<Name>.
	Name string
	// WAN is the network its uplink is on.
	WAN *WAN
	// Image has ip, iptables and sleep (the node image does).
	Image string
}

// Gateway is a router container that is up.
type Gateway struct {
	Container string
	// LAN is its address on the cluster's network, where nodes route
	// through it.
	LAN netip.Addr
	// WANAddress is its uplink's address: what the cloud sees of every
	// node behind it.
	WANAddress netip.Addr
	// WANLink is its uplink's interface inside it.
	WANLink string
}

// StartGateway runs a router between cl's network and the WAN: forwarding
// on, traffic leaving by the WAN leg masqueraded (as the embedded fleet's
// gateways do). Nodes use it after RouteVia.
func (c *Clusters) StartGateway(ctx context.Context, cl *Cluster, s GatewaySpec) (_ *Gateway, err error) {
	if !dockerNameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("gateway name %q: use lower-case letters, digits and '-'", s.Name)
	}
	if s.WAN == nil || s.Image == "" {
		return nil, errors.New("a gateway needs a WAN network and an image")
	}
	g := &Gateway{Container: cl.Name + "-gw-" + s.Name}
	if err := nameFree(ctx, g.Container); err != nil {
		return nil, err
	}
	if err := c.ledger.Record(c.owner, ledger.Entry{Kind: KindContainer, Name: g.Container, Time: time.Now()}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = removeContainer(context.WithoutCancel(ctx), g.Container)
		}
	}()
	// Not privileged: NET_ADMIN is all a router needs.
	if _, err := docker(ctx, nil, "run", "-d", "--name", g.Container, "--hostname", s.Name,
		"--network", cl.Network, "--cap-add", "NET_ADMIN", "--sysctl", "net.ipv4.ip_forward=1",
		"--label", "io.edgefault.owner="+c.owner, "--label", labelCluster+"="+cl.Name,
		"--entrypoint", "sleep", s.Image, "infinity"); err != nil {
		return nil, fmt.Errorf("start gateway %s: %w", s.Name, err)
	}
	if _, err := docker(ctx, nil, "network", "connect", s.WAN.Name, g.Container); err != nil {
		return nil, fmt.Errorf("connect gateway %s to %s: %w", s.Name, s.WAN.Name, err)
	}
	if g.LAN, err = containerAddr(ctx, g.Container, cl.Network); err != nil {
		return nil, err
	}
	if g.WANAddress, err = containerAddr(ctx, g.Container, s.WAN.Name); err != nil {
		return nil, err
	}
	if g.WANLink, err = linkWithAddr(ctx, g.Container, g.WANAddress); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, nil, "exec", g.Container, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", g.WANLink, "-j", "MASQUERADE"); err != nil {
		return nil, fmt.Errorf("gateway %s: masquerade on %s: %w", s.Name, g.WANLink, err)
	}
	return g, nil
}

// StopGateway removes the gateway's container.
func (c *Clusters) StopGateway(ctx context.Context, g *Gateway) error {
	if err := removeContainer(ctx, g.Container); err != nil {
		return err
	}
	return c.ledger.Forget(c.owner, ledger.Entry{Kind: KindContainer, Name: g.Container})
}

// RouteVia sends node's traffic to dst through the gateway (replacing a
// route there was). Its path to its API server and to the other nodes
// stays on the kind network.
func RouteVia(ctx context.Context, node string, dst netip.Prefix, g *Gateway) error {
	if _, err := docker(ctx, nil, "exec", node, "ip", "route", "replace", dst.String(), "via", g.LAN.String()); err != nil {
		return fmt.Errorf("route %s on %s via gateway %s: %w", dst, node, g.Container, err)
	}
	return nil
}

// WaitRoute waits until node reaches dst through its route: a connection
// accepted, or refused, by dst proves the path (the gateway forwards, its
// neighbours resolved). A route just set can answer "no route to host" for
// a moment while the gateway's LAN and WAN neighbours are resolved, and a
// runtime's first probe or a test's first request must not meet that.
func WaitRoute(ctx context.Context, node string, dst netip.Addr, within time.Duration) error {
	pid, err := ContainerPID(ctx, node)
	if err != nil {
		return err
	}
	// Port 9 (discard): nothing need listen; a refusal is an answer.
	a := netip.AddrPortFrom(dst, 9)
	if err := waitDial(ctx, nsdo.DialContext(fmt.Sprintf("/proc/%d/ns/net", pid)), a, within, func(err error) bool {
		return err == nil || errors.Is(err, syscall.ECONNREFUSED)
	}); err != nil {
		return fmt.Errorf("node %s does not reach %s through its gateway (check the gateway container and 'docker exec %s ip route'): %w", node, dst, node, err)
	}
	return nil
}

// RemoveRoute removes node's route to dst (none there is not an error).
func RemoveRoute(ctx context.Context, node string, dst netip.Prefix) error {
	if _, err := docker(ctx, nil, "exec", node, "sh", "-c", "ip route del "+dst.String()+" 2>/dev/null || true"); err != nil {
		return fmt.Errorf("remove route %s on %s: %w", dst, node, err)
	}
	return nil
}

// GatewayTarget is where a gateway's uplink is shaped: its WAN leg, with
// the host side of its veth as the peer, so both directions of the whole
// site's cloud traffic are impaired, shared by every node behind it.
func GatewayTarget(ctx context.Context, g *Gateway) (shaper.Target, error) {
	return LinkTarget(ctx, g.Container, g.WANLink)
}

// containerAddr is a container's IPv4 address on a Docker network.
func containerAddr(ctx context.Context, container, network string) (netip.Addr, error) {
	out, err := docker(ctx, nil, "inspect", "--format", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", container)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(out)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s's address on %s: %q: %w", container, network, out, err)
	}
	return a, nil
}

// linkWithAddr names the interface inside container that has address a.
func linkWithAddr(ctx context.Context, container string, a netip.Addr) (string, error) {
	out, err := docker(ctx, nil, "exec", container, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return "", err
	}
	if name := parseAddrLink(string(out), a); name != "" {
		return name, nil
	}
	return "", fmt.Errorf("%s: no interface has %s", container, a)
}

// parseAddrLink reads `ip -o -4 addr show` ("2: eth0    inet 172.18.0.2/16
// ...") and names the interface holding a.
func parseAddrLink(out string, a netip.Addr) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		if p, err := netip.ParsePrefix(f[3]); err == nil && p.Addr() == a {
			name, _, _ := strings.Cut(f[1], "@")
			return name
		}
	}
	return ""
}

// nameFree refuses a container name that is taken: what is recorded is
// removed on failure and by cleanup, which must never reach a container
// edgefault did not make.
func nameFree(ctx context.Context, container string) error {
	if _, err := docker(ctx, nil, "inspect", "--type", "container", "--format", "{{.Id}}", container); err == nil {
		return fmt.Errorf("a container named %s exists already: remove it ('edgefault cleanup' if edgefault made it, else 'docker rm -f %s') or choose another name", container, container)
	} else if !notFound(err) {
		return err
	}
	return nil
}
