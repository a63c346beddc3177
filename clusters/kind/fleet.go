package kind

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/shaper/impair"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Fleet is a fleet on kind that is up.
type Fleet struct {
	FleetName string        `json:"name"`
	Created   time.Time     `json:"created"`
	WAN       WAN           `json:"wan"`
	Sites     []fleetSite   `json:"sites"`
	All       []fleetMember `json:"members"`

	p *Provider
	// ns and targets are found from the containers when the fleet is
	// loaded: a container's PID is not state. nsID is each namespace's
	// identity then, so a PID reused after a container restarted is never
	// taken for the member.
	ns      map[string]string
	nsID    map[string]uint64
	targets map[string]shaper.Target
	pods    pods
}

type fleetSite struct {
	Name       string `json:"name"`
	Cluster    string `json:"cluster"`
	Kubeconfig string `json:"kubeconfig"`
	// APIServer is the control plane's address on the site's network
	// (where members reach it).
	APIServer string `json:"apiServer"`
}

type fleetMember struct {
	clusters.Member
	Container string `json:"container"`
	// Link is the interface shaped: a gateway's WAN leg, a node's eth0
	// (its cloud-bound traffic only).
	Link    string                 `json:"link,omitempty"`
	Profile *scenarios.LinkProfile `json:"profile,omitempty"`
}

var _ clusters.Fleet = (*Fleet)(nil)

func (f *Fleet) dir() string       { return filepath.Join(f.p.stateRoot(), f.FleetName) }
func (f *Fleet) statePath() string { return filepath.Join(f.dir(), member.StateFile) }

func (f *Fleet) save() error { return member.SaveState(f.dir(), f) }

// resolve finds every member's network namespace and shaping target.
func (f *Fleet) resolve(ctx context.Context) error {
	f.ns = map[string]string{}
	f.nsID = map[string]uint64{}
	f.targets = map[string]shaper.Target{}
	for _, m := range f.All {
		pid, err := ContainerPID(ctx, m.Container)
		if err != nil {
			return fmt.Errorf("member %s (container %s): %w", m.Name, m.Container, err)
		}
		f.ns[m.Name] = fmt.Sprintf("/proc/%d/ns/net", pid)
		if f.nsID[m.Name], err = nsInode(f.ns[m.Name]); err != nil {
			return fmt.Errorf("member %s (container %s): %w", m.Name, m.Container, err)
		}
		if m.Link == "" {
			continue
		}
		t, err := LinkTarget(ctx, m.Container, m.Link)
		if err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
		f.targets[m.Name] = t
	}
	return nil
}

// Name is the fleet's name.
func (f *Fleet) Name() string { return f.FleetName }

// Provider is "kind".
func (f *Fleet) Provider() string { return ProviderName }

// Members lists the cloud, gateways and nodes.
func (f *Fleet) Members() []clusters.Member {
	out := make([]clusters.Member, len(f.All))
	for i, m := range f.All {
		out[i] = m.Member
	}
	return out
}

func (f *Fleet) find(name string) (*fleetMember, error) {
	for i := range f.All {
		if f.All[i].Name == name {
			return &f.All[i], nil
		}
	}
	names := make([]string, len(f.All))
	for i, m := range f.All {
		names[i] = m.Name
	}
	sort.Strings(names)
	return nil, fmt.Errorf("fleet %s has no member %q (it has %s)", f.FleetName, name, strings.Join(names, ", "))
}

// Member finds a member by name.
func (f *Fleet) Member(name string) (clusters.Member, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Member{}, err
	}
	return m.Member, nil
}

func (f *Fleet) nsOf(name string) (member.NS, error) {
	m, err := f.find(name)
	if err != nil {
		return member.NS{}, err
	}
	path := f.ns[m.Name]
	if id, err := nsInode(path); err != nil || id != f.nsID[m.Name] {
		return member.NS{}, fmt.Errorf("member %s: container %s is not the one the fleet was made with (restarted or removed): take the fleet down ('edgefault fleet down --provider kind --fleet %s')", m.Name, m.Container, f.FleetName)
	}
	return member.NS{Member: m.Name, Path: path}, nil
}

// nsInode identifies the namespace at path.
func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func (f *Fleet) runner() member.Runner {
	return member.Runner{Ledger: f.p.ledger, Owner: f.FleetName, LogDir: filepath.Join(f.dir(), "logs")}
}

// StartCommand runs c as a process in member's namespace (the container's),
// from this machine's filesystem; with an image, as a pod on its Node.
func (f *Fleet) StartCommand(ctx context.Context, name string, c clusters.Command) (clusters.Process, error) {
	if c.Image != "" {
		m, err := f.find(name)
		if err != nil {
			return nil, err
		}
		return f.startPod(ctx, m, c)
	}
	ns, err := f.nsOf(name)
	if err != nil {
		return nil, err
	}
	return f.runner().StartCommand(ctx, ns, c)
}

// Exec runs argv in member's namespace to completion.
func (f *Fleet) Exec(ctx context.Context, name string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ns, err := f.nsOf(name)
	if err != nil {
		return err
	}
	return f.runner().Exec(ctx, ns, argv, stdin, stdout, stderr)
}

// Paths: the processes run from this machine's filesystem, so evidence
// goes straight into the fleet's directory.
func (f *Fleet) Paths(name string) (clusters.Paths, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Paths{}, err
	}
	data := filepath.Join(f.dir(), "nodes", m.Name)
	if m.Role == clusters.RoleCloud {
		data = filepath.Join(f.dir(), "cloud")
	}
	return clusters.Paths{Evidence: filepath.Join(f.dir(), "evidence"), Data: data}, nil
}

// Collect copies the members' evidence and the processes' logs into dir.
func (f *Fleet) Collect(ctx context.Context, dir string) error {
	return member.Collect(f.dir(), dir)
}

// Host is member's network namespace.
func (f *Fleet) Host(name string) (clusters.Host, error) {
	ns, err := f.nsOf(name)
	if err != nil {
		return nil, err
	}
	return member.Host(ns.Path), nil
}

// Counters are the bytes on member's interfaces but loopback.
func (f *Fleet) Counters(ctx context.Context, name string) (rx, tx int64, err error) {
	ns, err := f.nsOf(name)
	if err != nil {
		return 0, 0, err
	}
	return member.Counters(ns.Path)
}

// Sysctl sets a per-namespace net/... setting in member's namespace.
func (f *Fleet) Sysctl(ctx context.Context, name, key, value string) error {
	ns, err := f.nsOf(name)
	if err != nil {
		return err
	}
	return member.Sysctl(ns.Path, key, value)
}

func (f *Fleet) site(name string) (*fleetSite, error) {
	for i := range f.Sites {
		if f.Sites[i].Name == name {
			return &f.Sites[i], nil
		}
	}
	return nil, fmt.Errorf("fleet %s has no site %q", f.FleetName, name)
}

// SiteConfig is the site's admin configuration (kind publishes the API
// server on this machine's loopback).
func (f *Fleet) SiteConfig(site string) (*rest.Config, error) {
	s, err := f.site(site)
	if err != nil {
		return nil, err
	}
	return clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
}

// Kubeconfig is the site's admin kubeconfig, or with member set the
// member's own identity: its kubelet's client certificate, which the API
// server's NodeRestriction lets change only its own Node.
func (f *Fleet) Kubeconfig(site, name string) ([]byte, error) {
	s, err := f.site(site)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return os.ReadFile(s.Kubeconfig)
	}
	m, err := f.find(name)
	if err != nil {
		return nil, err
	}
	if m.Role != clusters.RoleNode || m.Site != site {
		return nil, fmt.Errorf("%s is not a node of site %s: on kind only nodes have an identity (gateways are not Nodes)", name, site)
	}
	admin, err := clientcmd.LoadFromFile(s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	var ca []byte
	for _, c := range admin.Clusters {
		ca = c.CertificateAuthorityData
	}
	pem, err := docker(context.Background(), nil, "exec", m.Container, "cat", "/var/lib/kubelet/pki/kubelet-client-current.pem")
	if err != nil {
		return nil, fmt.Errorf("%s's kubelet credentials: %w", name, err)
	}
	api, err := netip.ParseAddr(s.APIServer)
	if err != nil {
		return nil, fmt.Errorf("site %s: the API server's address in %s: %w", site, f.statePath(), err)
	}
	// The kubelet's file holds its certificate and key together.
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[s.Cluster] = &clientcmdapi.Cluster{Server: "https://" + netip.AddrPortFrom(api, 6443).String(), CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: pem, ClientKeyData: pem}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: s.Cluster, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// MemberKubeconfig writes member's own kubeconfig into the fleet's
// directory and returns its path (processes share this machine's files).
func (f *Fleet) MemberKubeconfig(name string) (string, error) {
	m, err := f.find(name)
	if err != nil {
		return "", err
	}
	b, err := f.Kubeconfig(m.Site, name)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(f.dir(), "kubeconfigs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

// LinkShaper shapes the fleet's members: a gateway's WAN leg (the whole
// site or building behind it), a node's cloud-bound traffic.
func (f *Fleet) LinkShaper(ctx context.Context) (clusters.LinkShaper, error) {
	return &member.LinkShaper{Target: f.target, New: f.shaper}, nil
}

func (f *Fleet) shaper(opts ...shaper.Option) (*shaper.Shaper, error) {
	return shaper.New(append(append([]shaper.Option{shaper.WithLedger(f.p.ledger, f.FleetName), shaper.WithLogger(f.p.log)}, f.p.shaperOpts...), opts...)...)
}

// target is where member is shaped, and what its impairment must be
// limited to: a node's, to the WAN (its kubelet's path stays whole).
func (f *Fleet) target(name string, imp *impair.Impairment) (shaper.Target, error) {
	m, err := f.find(name)
	if err != nil {
		return shaper.Target{}, err
	}
	t, ok := f.targets[m.Name]
	if !ok {
		return shaper.Target{}, fmt.Errorf("%s: the cloud's link is not shaped on kind (shape a gateway or a node)", name)
	}
	if imp != nil && m.Role == clusters.RoleNode && len(imp.Targets) == 0 {
		imp.Targets = []netip.Prefix{f.WAN.Subnet}
	}
	return t, nil
}

// applyProfiles puts the topology's link profiles in force.
func (f *Fleet) applyProfiles(ctx context.Context) error {
	ls, _ := f.LinkShaper(ctx)
	defer ls.Close()
	for _, m := range f.All {
		if m.Profile == nil {
			continue
		}
		imp, err := m.Profile.Impairment(m.Name)
		if err != nil {
			return err
		}
		if err := ls.Apply(ctx, m.Name, imp); err != nil {
			return fmt.Errorf("%s's link profile: %w", m.Name, err)
		}
	}
	return nil
}
