package netns

import (
	"context"
	"fmt"
	memberpkg "github.com/edgefault/edgefault/clusters/internal/member"
	"os"
	"path/filepath"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/internal/procmem"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/shaper/impair"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The embedded fleet's answers to the capabilities of clusters.Fleet.
var _ clusters.Fleet = (*Fleet)(nil)

// Provider names the provider that made the fleet.
func (f *Fleet) Provider() string { return providerName }

// LinkShaper returns a shaper for the fleet's members, recording into the
// fleet's ledger. It probes the kernel on its first change, not before, so
// reading what is in force stays cheap; changes made at once each get a
// shaper of their own, shaping as the first.
func (f *Fleet) LinkShaper(ctx context.Context) (clusters.LinkShaper, error) {
	return &memberpkg.LinkShaper{
		Target: func(member string, _ *impair.Impairment) (shaper.Target, error) { return f.Target(member) },
		New:    f.Shaper,
	}, nil
}

// StartCommand runs c on member as a process in its namespace (the
// embedded fleet runs no images).
func (f *Fleet) StartCommand(ctx context.Context, member string, c clusters.Command) (clusters.Process, error) {
	if c.Image != "" {
		return nil, fmt.Errorf("%s on %s: image %s: the embedded fleet runs commands, not images: %w", c.Name, member, c.Image, clusters.ErrUnsupported)
	}
	ns, err := f.ns(member)
	if err != nil {
		return nil, err
	}
	return f.runner().StartCommand(ctx, ns, c)
}

// Paths: every member shares this machine's filesystem, so its evidence
// goes straight into the fleet's evidence directory and its data into a
// directory of its own.
func (f *Fleet) Paths(member string) (clusters.Paths, error) {
	m, err := f.find(member)
	if err != nil {
		return clusters.Paths{}, err
	}
	data := filepath.Join(f.Dir(), "nodes", m.Name)
	if m.Role == clusters.RoleCloud {
		data = filepath.Join(f.Dir(), "cloud")
	}
	return clusters.Paths{Evidence: filepath.Join(f.Dir(), "evidence"), Data: data}, nil
}

// SiteConfig is the site's admin configuration, dialling from inside the
// namespace its control plane runs in.
func (f *Fleet) SiteConfig(site string) (*rest.Config, error) {
	sc, err := f.Cluster(site)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", sc.Admin)
	if err != nil {
		return nil, fmt.Errorf("site %s kubeconfig: %w", site, err)
	}
	cfg.Dial = nsdo.DialContext(sc.Namespace)
	return cfg, nil
}

// Kubeconfig is the site's admin kubeconfig, or member's own.
func (f *Fleet) Kubeconfig(site, member string) ([]byte, error) {
	sc, err := f.Cluster(site)
	if err != nil {
		return nil, err
	}
	path := sc.Admin
	if member != "" {
		var ok bool
		if path, ok = sc.Nodes[member]; !ok {
			return nil, fmt.Errorf("site %s has no member %q", site, member)
		}
	}
	return os.ReadFile(path)
}

// MemberKubeconfig is the path of member's own kubeconfig (members share
// this machine's filesystem).
func (f *Fleet) MemberKubeconfig(member string) (string, error) {
	m, err := f.find(member)
	if err != nil {
		return "", err
	}
	sc, err := f.Cluster(m.Site)
	if err != nil {
		return "", err
	}
	path, ok := sc.Nodes[m.Name]
	if !ok {
		return "", fmt.Errorf("site %s has no identity for %s", m.Site, m.Name)
	}
	return path, nil
}

// Host is member's network namespace.
func (f *Fleet) Host(member string) (clusters.Host, error) {
	m, err := f.find(member)
	if err != nil {
		return nil, err
	}
	return memberpkg.Host(m.Namespace), nil
}

// Counters sums the bytes received and sent on every interface of the
// member's namespace but loopback.
func (f *Fleet) Counters(ctx context.Context, member string) (rx, tx int64, err error) {
	m, err := f.find(member)
	if err != nil {
		return 0, 0, err
	}
	return memberpkg.Counters(m.Namespace)
}

// Sysctl writes /proc/sys/KEY inside the member's namespace.
func (f *Fleet) Sysctl(ctx context.Context, member, key, value string) error {
	m, err := f.find(member)
	if err != nil {
		return err
	}
	return memberpkg.Sysctl(m.Namespace, key, value)
}

// Collect copies the fleet's evidence (every member writes into the same
// directory) and its processes' logs into dir/evidence and dir/logs; a
// file of the same name there is replaced, others are left.
func (f *Fleet) Collect(ctx context.Context, dir string) error {
	return memberpkg.Collect(f.Dir(), dir)
}

// Info: the embedded fleet models everything but images; sites have
// control planes when the provider starts them (WithControlPlanes).
func (p *Provider) Info() clusters.Info { return Info(p.k8s != nil) }

// Info is what a provider made with or without control planes models,
// for checking a scenario without making one (which needs root).
func Info(controlPlanes bool) clusters.Info {
	return clusters.Info{Name: providerName, Commands: true, Gateways: true, GatewayRuntime: true, NodeLinks: true, ControlPlanes: controlPlanes, SiteControlPlanes: true, Disks: true, Readdress: true, NameServer: true}
}

// Memory is what the fleet's recorded processes (control planes,
// helpers, everything StartCommand started) and their children hold.
func (f *Fleet) Memory() clusters.Memory {
	entries, _ := f.p.ledger.Entries(f.FleetName)
	var pids []int
	for _, e := range entries {
		if e.Kind == ledger.KindProcess && e.Alive() {
			pids = append(pids, e.PID)
		}
	}
	u := procmem.Of(pids)
	return clusters.Memory{Processes: u.Processes, RSS: u.RSS, Anon: u.Anon, PSS: u.PSS}
}
