package shaper

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Backend is the kernel machinery used for delay and loss.
type Backend string

// Backends.
const (
	// BackendAuto picks netem where the kernel has it, otherwise fallback.
	BackendAuto Backend = "auto"
	// BackendNetem uses tbf/htb for rate and a netem leaf for delay, jitter
	// and loss.
	BackendNetem Backend = "netem"
	// BackendFallback uses tbf/htb (+ifb) for rate, nftables random drops
	// for loss and an NFQUEUE delayer process for delay and jitter.
	BackendFallback Backend = "fallback"
)

// ParseBackend parses a backend name.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(strings.ToLower(s)); b {
	case BackendAuto, BackendNetem, BackendFallback:
		return b, nil
	case "":
		return BackendAuto, nil
	}
	return "", fmt.Errorf("backend %q: use auto, netem or fallback", s)
}

// Capabilities is what the running kernel offers for shaping, found by
// trying each feature in a throwaway network namespace.
type Capabilities struct {
	Kernel   string          `json:"kernel"`
	Root     bool            `json:"root"`
	Features map[string]bool `json:"features"`
	// Errors holds why a feature was found missing, by feature.
	Errors map[string]string `json:"errors,omitempty"`
}

// Feature names probed.
const (
	FeatTBF          = "qdisc tbf"
	FeatHTB          = "qdisc htb"
	FeatIngress      = "qdisc ingress"
	FeatNetem        = "qdisc netem"
	FeatIFB          = "link ifb"
	FeatMirred       = "action mirred"
	FeatU32          = "filter u32"
	FeatNftNetdev    = "nft netdev ingress/egress"
	FeatNftNumgen    = "nft numgen (random loss)"
	FeatNfqueue      = "nfqueue (xt NFQUEUE via nft_compat)"
	FeatBridgeFilter = "br_netfilter (bridge-nf-call-iptables)"
)

// Has reports whether feature f was found.
func (c Capabilities) Has(f string) bool { return c.Features[f] }

// Backend is the backend BackendAuto resolves to.
func (c Capabilities) Backend() Backend {
	if c.Has(FeatNetem) {
		return BackendNetem
	}
	return BackendFallback
}

// Check reports what backend b cannot do on this kernel, or nil.
func (c Capabilities) Check(b Backend) error {
	need := []string{FeatTBF, FeatHTB, FeatIngress, FeatIFB, FeatMirred, FeatU32, FeatNftNetdev}
	switch b {
	case BackendNetem:
		need = append(need, FeatNetem)
	case BackendFallback:
		need = append(need, FeatNftNumgen, FeatNfqueue)
	}
	var missing []string
	for _, f := range need {
		if !c.Has(f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		hint := ""
		if b == BackendNetem {
			hint = " (load sch_netem with `modprobe sch_netem`, or use --backend fallback)"
		}
		return fmt.Errorf("the %s backend needs %s, which this kernel lacks%s", b, strings.Join(missing, ", "), hint)
	}
	return nil
}

// ErrNotRoot is returned when shaping is asked for without the privileges it
// needs.
var ErrNotRoot = errors.New("edgefault needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces and change qdiscs: run it with sudo")

// newCapabilities is an empty probe result: the kernel and whether we are
// root.
func newCapabilities() Capabilities {
	c := Capabilities{Features: map[string]bool{}, Errors: map[string]string{}, Root: os.Geteuid() == 0}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		c.Kernel = strings.TrimSpace(string(b))
	}
	return c
}

// Probe finds what the kernel offers by trying each feature in a
// throwaway network namespace; nothing outside it is touched.
func Probe() (Capabilities, error) {
	c := newCapabilities()
	if !c.Root {
		return c, ErrNotRoot
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return c, err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		return c, fmt.Errorf("create probe namespace: %w", err)
	}
	defer ns.Close()
	// Back to where we were; the probe works through handles bound to ns.
	if err := netns.Set(orig); err != nil {
		return c, err
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return c, err
	}
	defer nl.Close()
	nc, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	return probeWith(c, nl, nc, err, probeNames{veth: "probe0", peer: "probe1", ifb: "probeifb", table: "probe"})
}

// ProbeHere is Probe without a namespace of its own, for a process that
// has CAP_NET_ADMIN but not CAP_SYS_ADMIN (the node agent): it tries each
// feature on a veth pair and an ifb it creates in the caller's namespace,
// under names of its own, and removes them (and its nft tables) again.
func ProbeHere() (Capabilities, error) {
	c := newCapabilities()
	nl, err := netlink.NewHandle()
	if err != nil {
		return c, err
	}
	defer nl.Close()
	// Random, not the PID: in a container the PID is always 1, and what
	// a killed probe left must not collide with the next.
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	id := fmt.Sprintf("%x", rb)
	n := probeNames{veth: "efp" + id + "a", peer: "efp" + id + "b", ifb: "efp" + id + "i", table: "edgefault-probe-" + id}
	for _, name := range []string{n.veth, n.peer, n.ifb} {
		if _, err := nl.LinkByName(name); err == nil {
			return c, fmt.Errorf("probe: an interface %s is already here: not probing over what is not ours", name)
		}
	}
	nc, err := nftables.New()
	defer func() {
		// Only what this probe made: the names were free before it.
		for _, name := range []string{n.veth, n.ifb} { // the veth's peer goes with it
			if l, err := nl.LinkByName(name); err == nil {
				_ = nl.LinkDel(l)
			}
		}
		if nc != nil {
			nc.DelTable(&nftables.Table{Family: nftables.TableFamilyNetdev, Name: n.table})
			_ = nc.Flush()
			nc.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n.table})
			_ = nc.Flush()
		}
	}()
	return probeWith(c, nl, nc, err, n)
}

// probeNames are what a probe creates.
type probeNames struct{ veth, peer, ifb, table string }

// probeWith tries each feature through nl and nc (ncErr: why there is no
// nc).
func probeWith(c Capabilities, nl *netlink.Handle, nc *nftables.Conn, ncErr error, n probeNames) (Capabilities, error) {
	set := func(f string, err error) {
		c.Features[f] = err == nil
		if err != nil {
			c.Errors[f] = err.Error()
		}
	}
	// veth, not dummy: dummy is often a module, veth is what the fleet uses.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.veth}, PeerName: n.peer}
	if err := nl.LinkAdd(veth); err != nil {
		return c, fmt.Errorf("probe: create veth pair: %w (the kernel needs veth support)", err)
	}
	dl, err := nl.LinkByName(n.veth)
	if err != nil {
		return c, err
	}
	idx := dl.Attrs().Index
	root := netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: netlink.MakeHandle(1, 0)}
	try := func(f string, q netlink.Qdisc) {
		err := nl.QdiscReplace(q)
		set(f, err)
		if err == nil {
			_ = nl.QdiscDel(q)
		}
	}
	try(FeatTBF, &netlink.Tbf{QdiscAttrs: root, Rate: 125000, Limit: 10000, Buffer: netlink.Xmittime(125000, 4096)})
	try(FeatHTB, netlink.NewHtb(root))
	try(FeatNetem, netlink.NewNetem(root, netlink.NetemQdiscAttrs{Latency: 1000}))
	ing := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
	set(FeatIngress, nl.QdiscAdd(ing))
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: n.ifb}}
	set(FeatIFB, nl.LinkAdd(ifb))
	if c.Has(FeatIngress) && c.Has(FeatIFB) {
		il, err := nl.LinkByName(n.ifb)
		if err == nil {
			f := redirectFilter(idx, il.Attrs().Index)
			err = nl.FilterAdd(f)
			set(FeatMirred, err)
			set(FeatU32, err)
		} else {
			set(FeatMirred, err)
		}
	}
	if ncErr != nil {
		set(FeatNftNetdev, ncErr)
		return c, nil
	}
	t := nc.AddTable(&nftables.Table{Family: nftables.TableFamilyNetdev, Name: n.table})
	ch := nc.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookIngress, Device: n.veth, Priority: nftables.ChainPriorityFilter})
	ch2 := nc.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookEgress, Device: n.veth, Priority: nftables.ChainPriorityFilter})
	set(FeatNftNetdev, nc.Flush())
	if c.Has(FeatNftNetdev) {
		nc.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: dropRules(10, nil, Ingress, nftables.TableFamilyNetdev, nil)[0]})
		nc.AddRule(&nftables.Rule{Table: t, Chain: ch2, Exprs: dropRules(10, nil, Egress, nftables.TableFamilyNetdev, nil)[0]})
		set(FeatNftNumgen, nc.Flush())
	}
	it := nc.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n.table})
	ich := nc.AddChain(&nftables.Chain{Name: "pre", Table: it, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter})
	nc.AddRule(&nftables.Rule{Table: it, Chain: ich, Exprs: append(matchIfname(true, n.veth), queueExpr(7))})
	set(FeatNfqueue, nc.Flush())
	set(FeatBridgeFilter, bridgeFilterEnabled(""))
	return c, nil
}

// bridgeFilterEnabled reports whether bridged IPv4 traffic passes the inet
// hooks in the namespace at nsPath (needed to delay at a bridge port).
func bridgeFilterEnabled(nsPath string) error {
	v, err := readSysctlIn(nsPath, "net/bridge/bridge-nf-call-iptables")
	if err != nil {
		return fmt.Errorf("br_netfilter unavailable: %w", err)
	}
	if v != "1" {
		return fmt.Errorf("net.bridge.bridge-nf-call-iptables is %s, not 1", v)
	}
	return nil
}
