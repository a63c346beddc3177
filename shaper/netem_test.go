package shaper

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
)

// The netem backend cannot run on kernels without sch_netem (such as this
// project's CI machines), so its netlink objects are checked here: kinds,
// handles, parents and units.

func TestNetemPlan(t *testing.T) {
	imp := Impairment{Rate: 5 * Mbit, Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 2, Direction: Both}
	p := buildPlan(imp, planEnv{backend: BackendNetem, hasPeer: true})
	for _, d := range []*dirPlan{&p.Egress, &p.Ingress} {
		if d.Netem == nil || d.Netem.Delay != 100*time.Millisecond || d.Netem.Jitter != 10*time.Millisecond || d.Netem.Loss != 2 {
			t.Errorf("%s: netem leaf %+v, want delay 100ms jitter 10ms loss 2", d.Dir, d.Netem)
		}
		if d.DropPercent != 0 || d.needsDelayer() {
			t.Errorf("%s: the netem backend must not use nft drops (%v) or the delayer", d.Dir, d.DropPercent)
		}
		if d.Rate != 5*Mbit {
			t.Errorf("%s: rate %v", d.Dir, d.Rate)
		}
	}
	fb := buildPlan(imp, planEnv{backend: BackendFallback, hasPeer: true})
	if fb.Egress.Netem != nil || fb.Egress.DropPercent != 2 || fb.Egress.Delay != 100*time.Millisecond {
		t.Errorf("fallback plan: %+v", fb.Egress)
	}
	eg := buildPlan(Impairment{Delay: time.Second, Direction: Egress}, planEnv{backend: BackendNetem})
	if eg.Ingress.Netem != nil || eg.Egress.Netem == nil {
		t.Errorf("egress-only plan touched ingress: %+v", eg)
	}
}

func TestNetemUnderTbf(t *testing.T) {
	d := &dirPlan{Dir: Egress, Rate: 5 * Mbit, Netem: &netemParams{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 2}}
	tr := buildTree(7, d, 1)
	tbf, ok := tr.root.(*netlink.Tbf)
	if !ok {
		t.Fatalf("root is %T, want tbf", tr.root)
	}
	burst, limit := tbfSizes(5 * Mbit)
	if tbf.Handle != netlink.MakeHandle(1, 0) || tbf.Parent != netlink.HANDLE_ROOT || tbf.LinkIndex != 7 {
		t.Errorf("tbf handle %x parent %x link %d", tbf.Handle, tbf.Parent, tbf.LinkIndex)
	}
	if tbf.Rate != 625000 { // bytes/s
		t.Errorf("tbf rate %d bytes/s, want 625000", tbf.Rate)
	}
	if burst != 4096 || limit != 31250+4096 || tbf.Limit != limit {
		t.Errorf("burst %d limit %d (tbf %d), want 4096 and 35346", burst, limit, tbf.Limit)
	}
	if tbf.Buffer != netlink.Xmittime(625000, burst) {
		t.Errorf("tbf buffer %d ticks, want %d", tbf.Buffer, netlink.Xmittime(625000, burst))
	}
	if len(tr.leaves) != 1 {
		t.Fatalf("%d leaves", len(tr.leaves))
	}
	n, ok := tr.leaves[0].(*netlink.Netem)
	if !ok {
		t.Fatalf("leaf is %T, want netem", tr.leaves[0])
	}
	if n.Parent != netlink.MakeHandle(1, 1) || n.Handle != netlink.MakeHandle(11, 0) {
		t.Errorf("netem parent %x handle %x, want 1:1 and 11:0", n.Parent, n.Handle)
	}
	tick := netlink.TickInUsec()
	if n.Latency != uint32(100000*tick) || n.Jitter != uint32(10000*tick) {
		t.Errorf("netem latency %d jitter %d ticks, want %d and %d", n.Latency, n.Jitter, uint32(100000*tick), uint32(10000*tick))
	}
	if n.Loss != netlink.Percentage2u32(2) {
		t.Errorf("netem loss %d, want %d (2%% of 2^32)", n.Loss, netlink.Percentage2u32(2))
	}
	// 5mbit over 160 ms of delay+jitter+slack, 1500-byte packets, doubled: ~133; the floor is 10000.
	if n.Limit != 10000 {
		t.Errorf("netem limit %d", n.Limit)
	}
}

func TestNetemOnlyAndHtbTargets(t *testing.T) {
	tr := buildTree(3, &dirPlan{Dir: Ingress, Netem: &netemParams{Delay: time.Millisecond}}, 2)
	n, ok := tr.root.(*netlink.Netem)
	if !ok || n.Handle != netlink.MakeHandle(2, 0) || n.Parent != netlink.HANDLE_ROOT || len(tr.leaves) != 0 {
		t.Fatalf("netem-only tree: root %T %+v, %d leaves", tr.root, tr.root, len(tr.leaves))
	}

	d := &dirPlan{Dir: Ingress, Rate: 2 * Mbit, Targets: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/16")}, Netem: &netemParams{Loss: 5}}
	tr = buildTree(3, d, 2)
	h, ok := tr.root.(*netlink.Htb)
	if !ok || h.Handle != netlink.MakeHandle(2, 0) || h.Defcls != 1 || h.DirectQlen == nil || *h.DirectQlen != 0 {
		t.Fatalf("htb root %+v", tr.root)
	}
	if len(tr.classes) != 2 {
		t.Fatalf("%d classes", len(tr.classes))
	}
	shaped := tr.classes[0].(*netlink.HtbClass)
	free := tr.classes[1].(*netlink.HtbClass)
	if shaped.Handle != netlink.MakeHandle(2, 1) || shaped.Parent != netlink.MakeHandle(2, 0) || shaped.Rate != 250000 || shaped.Ceil != 250000 {
		t.Errorf("shaped class %x parent %x rate %d ceil %d (bytes/s), want 2:1, 2:0, 250000", shaped.Handle, shaped.Parent, shaped.Rate, shaped.Ceil)
	}
	if free.Handle != netlink.MakeHandle(2, 2) || free.Rate != uint64(freeRate)/8 {
		t.Errorf("free class %x rate %d", free.Handle, free.Rate)
	}
	leaf := tr.leaves[0].(*netlink.Netem)
	if leaf.Parent != netlink.MakeHandle(2, 1) || leaf.Handle != netlink.MakeHandle(12, 0) || leaf.Loss != netlink.Percentage2u32(5) {
		t.Errorf("leaf %+v", leaf)
	}
	if len(tr.filters) != 2 {
		t.Fatalf("%d filters", len(tr.filters))
	}
	target := tr.filters[0].(*netlink.U32)
	k := target.Sel.Keys[0]
	// Ingress: match the source address (offset 12) of 100.64.0.0/16.
	if target.ClassId != netlink.MakeHandle(2, 1) || k.Off != 12 || k.Mask != 0xffff0000 || k.Val != 0x64400000 || target.Priority != 1 {
		t.Errorf("target filter class %x key %+v prio %d", target.ClassId, k, target.Priority)
	}
	rest := tr.filters[1].(*netlink.U32)
	if rest.ClassId != netlink.MakeHandle(2, 2) || rest.Priority != 2 || rest.Sel.Keys[0].Mask != 0 {
		t.Errorf("catch-all filter %+v", rest)
	}
	if sameShape(&dirPlan{Rate: Mbit}, &dirPlan{Rate: 2 * Mbit}) != true || sameShape(&dirPlan{Rate: Mbit}, d) {
		t.Error("sameShape: tbf->tbf changes in place, anything with targets grafts")
	}
}

func TestTbfSizes(t *testing.T) {
	for r, want := range map[Rate][2]uint32{
		1 * Mbit:   {4096, 6250 + 4096},
		20 * Mbit:  {12500, 125000 + 12500},
		100 * Mbit: {62500, 625000 + 62500},
	} {
		b, l := tbfSizes(r)
		if b != want[0] || l != want[1] {
			t.Errorf("%v: burst %d limit %d, want %v", r, b, l, want)
		}
	}
}

func TestDropRules(t *testing.T) {
	rules := dropRules(2.5, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("100.64.0.1/32")}, Egress, nftables.TableFamilyNetdev, nil)
	if len(rules) != 2 {
		t.Fatalf("%d rules, want one per target", len(rules))
	}
	var ng *expr.Numgen
	var cmp *expr.Cmp
	for _, e := range rules[0] {
		switch x := e.(type) {
		case *expr.Numgen:
			ng = x
		case *expr.Cmp:
			if x.Op == expr.CmpOpLt {
				cmp = x
			}
		}
	}
	if ng == nil || ng.Modulus != 10000 || cmp == nil || string(cmp.Data) != string([]byte{0, 0, 0, 250}) {
		t.Errorf("2.5%% drop: numgen %+v, cmp %+v (want mod 10000 < 250, big-endian)", ng, cmp)
	}
	if _, ok := rules[0][len(rules[0])-1].(*expr.Verdict); !ok {
		t.Error("rule does not end in a verdict")
	}
	all := dropRules(100, nil, Ingress, nftables.TableFamilyNetdev, nil)
	for _, e := range all[0] {
		if _, ok := e.(*expr.Numgen); ok {
			t.Error("an outage must drop everything, not a random share")
		}
	}
}
