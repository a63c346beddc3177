package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Provider builds embedded fleets.
type Provider struct {
	ledger     *ledger.Ledger
	stateDir   string
	log        *slog.Logger
	shaperOpts []shaper.Option
	k8s        *k8sbin.Cache
}

// WithControlPlanes gives every site its own Kubernetes control plane
// (see controlplane.go), from binaries `edgefault setup` built into c.
func WithControlPlanes(c k8sbin.Cache) Option { return func(p *Provider) { p.k8s = &c } }

// Option configures a Provider.
type Option func(*Provider)

// WithLedger records created objects in l (default: the default ledger).
func WithLedger(l *ledger.Ledger) Option { return func(p *Provider) { p.ledger = l } }

// WithLogger sets where progress goes.
func WithLogger(l *slog.Logger) Option { return func(p *Provider) { p.log = l } }

// WithShaperOptions passes options to the shaper that applies link profiles.
func WithShaperOptions(o ...shaper.Option) Option {
	return func(p *Provider) { p.shaperOpts = append(p.shaperOpts, o...) }
}

// NewProvider returns the embedded-fleet provider.
func NewProvider(opts ...Option) (*Provider, error) {
	p := &Provider{log: slog.Default()}
	for _, o := range opts {
		o(p)
	}
	if p.ledger == nil {
		l, err := ledger.Open(ledger.DefaultDir())
		if err != nil {
			return nil, err
		}
		p.ledger = l
	}
	p.stateDir = filepath.Join(filepath.Dir(p.ledger.Dir()), "fleets")
	if err := os.MkdirAll(p.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet state directory: %w", err)
	}
	return p, nil
}

// Name is "netns".
func (p *Provider) Name() string { return "netns" }

// Ledger is the ledger the provider records into.
func (p *Provider) Ledger() *ledger.Ledger { return p.ledger }

// member is a fleet member with what the provider needs to find its links.
type member struct {
	clusters.Member
	// Dev is the member's LAN interface (eth0 on nodes and the cloud, lan0
	// on gateways) and Port its fabric-side end.
	Dev  string `json:"dev"`
	Port string `json:"port"`
	// WANPort is a gateway's uplink port in the fabric (its wan0's peer).
	WANPort string `json:"wanPort,omitempty"`
	Bridge  string `json:"bridge"`
	Prefix  int    `json:"prefix"`
	// Via is the next hop of the default route.
	Via     string                 `json:"via,omitempty"`
	Profile *scenarios.LinkProfile `json:"profile,omitempty"`
}

type site struct {
	Name   string `json:"name"`
	LAN    string `json:"lan"`
	Bridge string `json:"bridge"`
}

// Fleet is an embedded fleet that is up.
type Fleet struct {
	FleetName string `json:"name"`
	// Clusters are the sites' control planes, by site, when the fleet has
	// them.
	Clusters map[string]*SiteCluster `json:"clusters,omitempty"`
	Created  time.Time               `json:"created"`
	Ready    bool                    `json:"ready"`
	Fabric   string                  `json:"fabric"`
	Sites    []site                  `json:"sites"`
	All      []member                `json:"members"`
	p        *Provider
}

var _ clusters.Fleet = (*Fleet)(nil)

// Name is the fleet's name.
func (f *Fleet) Name() string { return f.FleetName }

// Members lists the cloud, the gateways and the nodes.
func (f *Fleet) Members() []clusters.Member {
	out := make([]clusters.Member, len(f.All))
	for i, m := range f.All {
		out[i] = m.Member
	}
	return out
}

func (f *Fleet) find(name string) (*member, error) {
	for i := range f.All {
		if f.All[i].Name == name || f.All[i].Namespace == name {
			return &f.All[i], nil
		}
	}
	var names []string
	for _, m := range f.All {
		names = append(names, m.Name)
	}
	return nil, fmt.Errorf("fleet %q has no node or gateway %q (it has: %s)", f.FleetName, name, strings.Join(names, ", "))
}

// Member finds a member by name or namespace name.
func (f *Fleet) Member(name string) (clusters.Member, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Member{}, err
	}
	return m.Member, nil
}

func (f *Fleet) namespaces() []string {
	var out []string
	for _, m := range f.All {
		out = append(out, m.Namespace)
	}
	return out
}

// Target is the link edgefault shapes for a member: a gateway's uplink
// (its WAN leg: the whole building or site behind it) or a node's LAN
// link (that node alone).
func (f *Fleet) Target(name string) (shaper.Target, error) {
	m, err := f.find(name)
	if err != nil {
		return shaper.Target{}, err
	}
	switch m.Role {
	case clusters.RoleGateway:
		return shaper.Target{Link: shaper.Link{Netns: m.Namespace, Name: "wan0"}, Peer: &shaper.Link{Netns: f.Fabric, Name: m.WANPort}}, nil
	case clusters.RoleNode:
		return shaper.Target{Link: shaper.Link{Netns: m.Namespace, Name: m.Dev}, Peer: &shaper.Link{Netns: f.Fabric, Name: m.Port}}, nil
	}
	return shaper.Target{}, fmt.Errorf("%s is the cloud: shape the uplink of a gateway or the link of a node instead", name)
}

// Shaper returns a shaper that records into the fleet's ledger. Close it
// when done: it keeps namespaces open.
func (f *Fleet) Shaper(opts ...shaper.Option) (*shaper.Shaper, error) {
	o := append([]shaper.Option{shaper.WithLedger(f.p.ledger, f.FleetName), shaper.WithLogger(f.p.log)}, f.p.shaperOpts...)
	return shaper.New(append(o, opts...)...)
}

func (p *Provider) statePath(name string) string { return filepath.Join(p.stateDir, name+".json") }

// ValidateName checks a fleet name.
func ValidateName(name string) error {
	if err := ledger.ValidOwner(name); err != nil {
		return fmt.Errorf("fleet name: %w", err)
	}
	if len(name) > 24 || strings.ContainsAny(name, "._") {
		return fmt.Errorf("fleet name %q: use at most 24 letters, digits and '-'", name)
	}
	if name == "shape" {
		return fmt.Errorf("fleet name %q is reserved", name)
	}
	return nil
}

// Get loads a fleet that is up.
func (p *Provider) Get(ctx context.Context, name string) (clusters.Fleet, error) { return p.Load(name) }

// Load loads a fleet that is up, as its concrete type.
func (p *Provider) Load(name string) (*Fleet, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fleet %q is not up (see `edgefault fleet list`; start it with `edgefault fleet up --name %s`)", name, name)
	}
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fleet %q state %s is corrupt: %w; `edgefault cleanup --fleet %s` removes the fleet", name, p.statePath(name), err, name)
	}
	if !f.Ready {
		return nil, fmt.Errorf("fleet %q did not finish coming up; run `edgefault cleanup --fleet %s`", name, name)
	}
	f.p = p
	return &f, nil
}

// List names the fleets with state on this machine.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(p.stateDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	sort.Strings(out)
	return out, nil
}

// plan lays out the members of spec: names, addresses, ports.
func plan(name string, spec *scenarios.FleetSpec) (*Fleet, error) {
	f := &Fleet{FleetName: name, Fabric: name + "-fabric", Created: time.Now().UTC()}
	ns := func(n string) string { return name + "-" + n }
	f.All = append(f.All, member{Member: clusters.Member{Name: "cloud", Role: clusters.RoleCloud, Address: cloudAddr.String(), Namespace: ns("cloud")},
		Dev: "eth0", Port: "cloud", Bridge: "wan", Prefix: wanPrefix.Bits()})
	var alloc lanAllocator
	wanNext := u32(cloudAddr) + 1
	gwN, nodeN := 0, 0
	for si, s := range spec.Sites {
		type bld struct {
			name  string
			gw    scenarios.Gateway
			nodes []scenarios.Node
		}
		var blds []bld
		if len(s.Buildings) == 0 {
			blds = append(blds, bld{"", *s.Gateway, scenarios.ExpandNodes(s.Name, s.Nodes, s.NodeCount)})
		}
		for _, b := range s.Buildings {
			blds = append(blds, bld{b.Name, b.Gateway, scenarios.ExpandNodes(s.Name+"-"+b.Name, b.Nodes, b.NodeCount)})
		}
		hosts := 0
		for _, b := range blds {
			hosts += 1 + len(b.nodes)
		}
		lan, err := alloc.block(hosts)
		if err != nil {
			return nil, err
		}
		br := fmt.Sprintf("lan%d", si)
		f.Sites = append(f.Sites, site{Name: s.Name, LAN: lan.String(), Bridge: br})
		host := 1
		gwAddr := map[string]netip.Addr{}
		for _, b := range blds {
			gwN++
			a := nth(lan, host)
			host++
			gwAddr[b.name] = a
			wan := addr(wanNext)
			wanNext++
			if !wanPrefix.Contains(wan) {
				return nil, fmt.Errorf("too many gateways for the WAN %v", wanPrefix)
			}
			f.All = append(f.All, member{Member: clusters.Member{Name: b.gw.Name, Role: clusters.RoleGateway, Site: s.Name, Building: b.name,
				Address: a.String(), WANAddress: wan.String(), Namespace: ns(b.gw.Name)},
				Dev: "lan0", Port: fmt.Sprintf("g%d", gwN), WANPort: fmt.Sprintf("w%d", gwN), Bridge: br, Prefix: lan.Bits(),
				Via: cloudAddr.String(), Profile: b.gw.Uplink})
		}
		for _, b := range blds {
			for _, n := range b.nodes {
				nodeN++
				a := nth(lan, host)
				host++
				f.All = append(f.All, member{Member: clusters.Member{Name: n.Name, Role: clusters.RoleNode, Site: s.Name, Building: b.name,
					Gateway: b.gw.Name, Address: a.String(), Namespace: ns(n.Name)},
					Dev: "eth0", Port: fmt.Sprintf("n%d", nodeN), Bridge: br, Prefix: lan.Bits(), Via: gwAddr[b.name].String(), Profile: n.Link})
			}
		}
	}
	return f, nil
}

// Up creates fleet name from spec; see the package doc for the layout.
// Everything is recorded in the ledger before it is created, so a crash at
// any point leaves nothing `edgefault cleanup` cannot remove.
func (p *Provider) Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (clusters.Fleet, error) {
	return p.UpFleet(ctx, name, spec)
}

// UpFleet is Up returning the concrete fleet.
func (p *Provider) UpFleet(ctx context.Context, name string, spec *scenarios.FleetSpec) (*Fleet, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, shaper.ErrNotRoot
	}
	if err := spec.Validate("spec"); err != nil {
		return nil, err
	}
	if _, err := os.Stat(p.statePath(name)); err == nil {
		return nil, fmt.Errorf("fleet %q already exists: take it down first (`edgefault fleet down --name %s`) or pick another --name", name, name)
	}
	if _, err := os.Stat("/run/netns/" + name + "-fabric"); err == nil {
		return nil, fmt.Errorf("namespace %s-fabric exists but fleet %q has no state: run `edgefault cleanup --fleet %s`", name, name, name)
	}
	f, err := plan(name, spec)
	if err != nil {
		return nil, err
	}
	// Names can meet across fleets (fleet "a" with node "b-cloud" and fleet
	// "a-b"'s cloud are both a-b-cloud): never record, and so never later
	// delete, a namespace that is not ours.
	for _, ns := range append([]string{f.Fabric}, f.namespaces()...) {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			return nil, fmt.Errorf("namespace %s already exists (another fleet's, or left by something else): pick another --name", ns)
		}
	}
	f.p = p
	start := time.Now()
	if err := p.ledger.Record(name, ledger.Entry{Kind: ledger.KindState, Name: p.statePath(name)}); err != nil {
		return nil, err
	}
	if err := f.save(); err != nil {
		return nil, err
	}
	b := &builder{p: p, f: f}
	if err := b.build(ctx); err != nil {
		return nil, fmt.Errorf("bring up fleet %q: %w (remove what was made with `edgefault cleanup --fleet %s`)", name, err, name)
	}
	p.log.Info("fleet namespaces and links ready", "fleet", name, "members", len(f.All), "elapsed", time.Since(start).Round(time.Millisecond))
	if err := f.applyProfiles(ctx); err != nil {
		return nil, fmt.Errorf("bring up fleet %q: %w (remove it with `edgefault cleanup --fleet %s`)", name, err, name)
	}
	if p.k8s != nil {
		if err := f.startControlPlanes(ctx, *p.k8s); err != nil {
			return nil, fmt.Errorf("bring up fleet %q: %w (remove it with `edgefault cleanup --fleet %s`)", name, err, name)
		}
	}
	f.Ready = true
	if err := f.save(); err != nil {
		return nil, err
	}
	p.log.Info("fleet up", "fleet", name, "sites", len(f.Sites), "members", len(f.All), "elapsed", time.Since(start).Round(time.Millisecond))
	return f, nil
}

func (f *Fleet) save() error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	path := f.p.statePath(f.FleetName)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("write fleet state: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

func (f *Fleet) applyProfiles(ctx context.Context) error {
	var sh *shaper.Shaper
	defer func() {
		// Its cached namespace handles would keep the fleet's namespaces
		// alive after a down.
		if sh != nil {
			sh.Close()
		}
	}()
	for _, m := range f.All {
		if m.Profile == nil {
			continue
		}
		imp, err := m.Profile.Impairment(m.Name)
		if err != nil {
			return err
		}
		if sh == nil {
			if sh, err = f.Shaper(); err != nil {
				return err
			}
		}
		t, err := f.Target(m.Name)
		if err != nil {
			return err
		}
		if err := sh.Apply(ctx, t, imp); err != nil {
			return err
		}
	}
	return nil
}

// Down removes the fleet: its helper processes, namespaces and state.
func (p *Provider) Down(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	entries, err := p.ledger.Entries(name)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		if _, err := os.Stat(p.statePath(name)); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fleet %q is not up (nothing recorded for it)", name)
		}
	}
	return p.Sweep(name)
}

// Sweep removes everything the ledger holds for owner.
func (p *Provider) Sweep(owner string) error {
	rm := shaper.Removers()
	rm[ledger.KindNetns] = func(e ledger.Entry) error {
		err := netns.DeleteNamed(e.Name)
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
			return nil
		case errors.Is(err, unix.EINVAL):
			// Not a mount point: killed between creating the file and
			// bind-mounting the namespace on it. Only the file is left.
			if rerr := os.Remove(filepath.Join("/run/netns", e.Name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return rerr
			}
			return nil
		}
		return err
	}
	if err := p.ledger.Sweep(owner, rm); err != nil {
		return err
	}
	// The state directory of the shaper for this owner, if any.
	_ = os.RemoveAll(filepath.Join(filepath.Dir(p.ledger.Dir()), "shape", owner))
	_ = os.RemoveAll(filepath.Join(p.stateDir, owner))
	return nil
}

// builder creates a fleet's namespaces and links.
type builder struct {
	p      *Provider
	f      *Fleet
	orig   netns.NsHandle
	fabric *netlink.Handle
	fabNS  netns.NsHandle
	brIdx  map[string]int
}

// newNS creates a named namespace, recorded first, and configures its
// sysctls while the thread is inside it. The caller's thread is locked.
func (b *builder) newNS(name string, sysctls map[string]string) (netns.NsHandle, error) {
	if err := b.p.ledger.Record(b.f.FleetName, ledger.Entry{Kind: ledger.KindNetns, Name: name}); err != nil {
		return 0, err
	}
	h, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(b.orig)
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.EEXIST) {
			// Someone else's: it must not be swept as ours.
			_ = b.p.ledger.Forget(b.f.FleetName, ledger.Entry{Kind: ledger.KindNetns, Name: name})
		}
		return 0, fmt.Errorf("create namespace %s: %w", name, err)
	}
	var serr error
	for k, v := range sysctls {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil && serr == nil {
			serr = fmt.Errorf("sysctl %s in %s: %w", k, name, err)
		}
	}
	if err := netns.Set(b.orig); err != nil {
		h.Close()
		return 0, fmt.Errorf("return to the host namespace: %w", err)
	}
	if serr != nil {
		h.Close()
		return 0, serr
	}
	return h, nil
}

var baseSysctls = map[string]string{
	// IPv4 only: no router solicitations or DAD noise on the wires.
	"net/ipv6/conf/all/disable_ipv6":     "1",
	"net/ipv6/conf/default/disable_ipv6": "1",
}

func (b *builder) build(ctx context.Context) error {
	runtime.LockOSThread()
	var err error
	if b.orig, err = netns.Get(); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		// Only release the thread if it is back where it started.
		if cur, err := netns.Get(); err == nil {
			if cur.Equal(b.orig) {
				runtime.UnlockOSThread()
			}
			cur.Close()
		}
		b.orig.Close()
	}()
	f := b.f
	if b.fabNS, err = b.newNS(f.Fabric, baseSysctls); err != nil {
		return err
	}
	defer b.fabNS.Close()
	if b.fabric, err = netlink.NewHandleAt(b.fabNS); err != nil {
		return err
	}
	defer b.fabric.Close()
	b.brIdx = map[string]int{}
	bridges := []string{"wan"}
	for _, s := range f.Sites {
		bridges = append(bridges, s.Bridge)
	}
	for _, name := range bridges {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := b.fabric.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if err := b.fabric.LinkSetUp(br); err != nil {
			return err
		}
		l, err := b.fabric.LinkByName(name)
		if err != nil {
			return err
		}
		b.brIdx[name] = l.Attrs().Index
	}
	if err := writeSysctlFabric(b); err != nil {
		return err
	}
	for i := range f.All {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.member(&f.All[i]); err != nil {
			return fmt.Errorf("%s %s: %w", f.All[i].Role, f.All[i].Name, err)
		}
		if n := i + 1; n%100 == 0 {
			b.p.log.Info("members created", "fleet", f.FleetName, "done", n, "of", len(f.All))
		}
	}
	return nil
}

// writeSysctlFabric lets bridged IPv4 traffic through the fabric's inet
// hooks (br_netfilter), which is where the shaper delays what a member
// sends. It is per namespace, so the host is not affected.
func writeSysctlFabric(b *builder) error {
	return inNS(b.fabNS, b.orig, func() error {
		p := "/proc/sys/net/bridge/bridge-nf-call-iptables"
		if _, err := os.Stat(p); err != nil {
			return nil // no br_netfilter: egress delay will say so when asked for
		}
		return os.WriteFile(p, []byte("1"), 0o644)
	})
}

// inNS runs fn in ns on the (locked) current thread and returns to orig.
func inNS(ns, orig netns.NsHandle, fn func() error) error {
	if err := netns.Set(ns); err != nil {
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return err
	}
	return ferr
}

func (b *builder) member(m *member) error {
	sysctls := baseSysctls
	if m.Role == clusters.RoleGateway {
		sysctls = map[string]string{"net/ipv4/ip_forward": "1"}
		for k, v := range baseSysctls {
			sysctls[k] = v
		}
	}
	h, err := b.newNS(m.Namespace, sysctls)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	if lo, err := nl.LinkByName("lo"); err == nil {
		_ = nl.LinkSetUp(lo)
	}
	prefix := m.Prefix
	if err := b.cable(nl, h, m.Port, m.Dev, m.Bridge, m.Name, m.Address, prefix); err != nil {
		return err
	}
	if m.Role == clusters.RoleGateway {
		if err := b.cable(nl, h, m.WANPort, "wan0", "wan", m.Name+" uplink", m.WANAddress, wanPrefix.Bits()); err != nil {
			return err
		}
		if err := masquerade(h, "wan0"); err != nil {
			return err
		}
	}
	if m.Via != "" {
		dev := m.Dev
		if m.Role == clusters.RoleGateway {
			dev = "wan0"
		}
		l, err := nl.LinkByName(dev)
		if err != nil {
			return err
		}
		gw := net.ParseIP(m.Via)
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %s: %w", m.Via, err)
		}
	}
	return nil
}

// cable creates a veth from the fabric (port, on bridge br) to dev in the
// member's namespace and addresses it.
func (b *builder) cable(nl *netlink.Handle, h netns.NsHandle, port, dev, br, alias, address string, bits int) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: b.brIdx[br], TxQLen: 1000}, PeerName: dev, PeerNamespace: netlink.NsFd(h)}
	if err := b.fabric.LinkAdd(v); err != nil {
		return fmt.Errorf("create cable %s <-> %s: %w", port, dev, err)
	}
	pl, err := b.fabric.LinkByName(port)
	if err != nil {
		return err
	}
	_ = b.fabric.LinkSetAlias(pl, alias)
	if err := b.fabric.LinkSetUp(pl); err != nil {
		return err
	}
	l, err := nl.LinkByName(dev)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", address, bits))
	if err != nil {
		return err
	}
	if err := nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", address, dev, err)
	}
	return nl.LinkSetUp(l)
}

// masquerade makes a gateway rewrite what leaves on its uplink to its own
// WAN address, as a home or cellular router does; replies come back through
// the gateway that the device used.
func masquerade(h netns.NsHandle, dev string) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "edgefault-nat"})
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	name := make([]byte, 16)
	copy(name, dev)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("masquerade on %s: %w", dev, err)
	}
	return nil
}
