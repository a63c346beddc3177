package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Up creates fleet name from spec; see the package doc for the layout.
// Everything is recorded in the ledger before it is created, so a crash at
// any point leaves nothing `edgefault cleanup` cannot remove; an Up that
// fails takes down what it made before it returns.
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
	// One Up or Down of a name at a time: two racing Ups would both pass
	// the checks below, and the loser's clean-up would take the winner's
	// fleet with it.
	unlock, err := p.lock(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := spec.Validate("spec"); err != nil {
		return nil, err
	}
	if _, err := os.Stat(p.statePath(name)); err == nil {
		return nil, fmt.Errorf("fleet %q already exists: take it down first (`edgefault fleet down --fleet %s`) or pick another --fleet", name, name)
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
			return nil, fmt.Errorf("namespace %s already exists (another fleet's, or left by something else): pick another --fleet", ns)
		}
	}
	f.p = p
	// What a failed Up made, it takes down again: the caller (a user's
	// suite) may never call Down for a fleet it was not given.
	fail := func(err error) (*Fleet, error) {
		err = fmt.Errorf("bring up fleet %q: %w", name, err)
		if derr := p.down(name); derr != nil {
			return nil, fmt.Errorf("%w; taking down what was made failed too (%v): run `edgefault cleanup --fleet %s`", err, derr, name)
		}
		p.log.Info("took down what the failed fleet up had made", "fleet", name)
		return nil, err
	}
	start := time.Now()
	if err := p.ledger.Record(name, ledger.Entry{Kind: ledger.KindState, Name: p.statePath(name)}); err != nil {
		return nil, err
	}
	if err := f.save(); err != nil {
		return fail(err)
	}
	b := &builder{p: p, f: f}
	if err := b.build(ctx); err != nil {
		return fail(err)
	}
	p.log.Info("fleet namespaces and links ready", "fleet", name, "members", len(f.All), "elapsed", time.Since(start).Round(time.Millisecond))
	if err := f.applyProfiles(ctx); err != nil {
		return fail(err)
	}
	if p.k8s != nil {
		if err := f.startControlPlanes(ctx, *p.k8s); err != nil {
			return fail(err)
		}
	}
	f.Ready = true
	if err := f.save(); err != nil {
		return fail(err)
	}
	p.log.Info("fleet up", "fleet", name, "sites", len(f.Sites), "members", len(f.All), "elapsed", time.Since(start).Round(time.Millisecond))
	return f, nil
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
