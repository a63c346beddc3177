package failover_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) {
	shaper.RunHelperIfInvoked()
	os.Exit(m.Run())
}

type site struct {
	f     *netns.Fleet
	sh    *shaper.Shaper
	cloud string // host:port of a TCP service in the cloud
}

// factory is a site with two buildings, each a gateway and two devices.
func factory() scenarios.Site {
	return scenarios.Site{Name: "factory", Buildings: []scenarios.Building{
		{Name: "a", Gateway: scenarios.Gateway{Name: "gw-a"}, Nodes: []scenarios.Node{{Name: "a1"}, {Name: "a2"}}},
		{Name: "b", Gateway: scenarios.Gateway{Name: "gw-b"}, Nodes: []scenarios.Node{{Name: "b1"}, {Name: "b2"}}},
	}}
}

// fleet brings up sites under a test-unique name with a ledger of its own
// (and their control planes, with netns.WithControlPlanes), taken down
// when the test ends.
func fleet(t *testing.T, prefix string, sites []scenarios.Site, opts ...netns.Option) *netns.Fleet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces, routes and control planes (CI runs as root)")
	}
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := netns.NewProvider(append([]netns.Option{netns.WithLedger(l)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%10000)
	f, err := p.UpFleet(context.Background(), name, &scenarios.FleetSpec{Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Down(context.Background(), name) })
	return f
}

// up brings up a factory (two buildings) and a one-node store, and a TCP
// service in the cloud for the probes.
func up(t *testing.T) *site {
	t.Helper()
	f := fleet(t, "fo", []scenarios.Site{factory(),
		{Name: "store", Gateway: &scenarios.Gateway{Name: "store-gw"}, Nodes: []scenarios.Node{{Name: "pos"}}}})
	cloud, _ := f.NetnsMember("cloud")
	ln, err := traffic.Knock(cloud.Namespace, cloud.Address+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sh, err := f.Shaper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.Close)
	return &site{f: f, sh: sh, cloud: ln.Addr().String()}
}

func (s *site) addr(t *testing.T, member string) netip.Addr {
	m, err := s.f.NetnsMember(member)
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddr(m.Address)
}

func (s *site) cut(t *testing.T, gw string, out bool) {
	t.Helper()
	tg, err := s.f.Target(gw)
	if err != nil {
		t.Fatal(err)
	}
	if out {
		err = s.sh.Apply(context.Background(), tg, shaper.Impairment{Outage: true})
	} else {
		err = s.sh.Clear(context.Background(), tg)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func defaultGW(t *testing.T, ns string) string {
	t.Helper()
	var gw string
	err := nsdo.Do(ns, func() error {
		rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range rs {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				gw = r.Gw.String()
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

func reaches(ns, addr string) bool {
	err := nsdo.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}

func waitState(t *testing.T, f *failover.Failover, want failover.State, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if f.Status().State == want {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("failover %+v after %s, want %s", f.Status(), within, want)
	return 0
}

// The factory: building A's gateway loses its uplink; A's device moves its
// default route to B's gateway and still reaches the cloud; it keeps
// probing A through A and moves back after the hold-down. A link that
// flaps inside the hold-down makes one switch each way, no more.
func TestFactoryFailsOverAndBack(t *testing.T) {
	s := up(t)
	gwA, gwB := s.addr(t, "gw-a"), s.addr(t, "gw-b")
	ctx, cancel := context.WithCancel(context.Background())
	type device struct {
		ns string
		fo *failover.Failover
	}
	var devs []device
	done := make(chan error, 2)
	for _, n := range []string{"a1", "a2"} { // both devices of building A
		m, _ := s.f.NetnsMember(n)
		fo, err := failover.New(failover.Config{Primary: gwA, Alternate: gwB, Targets: []string{s.cloud}, Interval: 200 * time.Millisecond, HoldDown: 3 * time.Second, Netns: m.Namespace, Node: n})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, device{m.Namespace, fo})
		go func() { done <- fo.Run(ctx) }()
	}
	time.Sleep(time.Second)
	for _, d := range devs {
		if st := d.fo.Status(); st.State != failover.Primary || !st.PrimaryHealthy {
			t.Fatalf("before the cut: %+v", st)
		}
	}

	s.cut(t, "gw-a", true)
	cut := time.Now()
	for _, d := range devs {
		waitState(t, d.fo, failover.Alternate, 9*time.Second) // target 3 s, 3x on a loaded machine
		t.Logf("%s: on the alternate %s after the cut (switched at %s)", d.fo.Status().Node, time.Since(cut).Round(time.Millisecond), d.fo.Status().Since.Sub(cut).Round(time.Millisecond))
		if gw := defaultGW(t, d.ns); gw != gwB.String() {
			t.Fatalf("default route via %s, want %s", gw, gwB)
		}
		if !reaches(d.ns, s.cloud) {
			t.Fatal("a device of building A does not reach the cloud through building B")
		}
	}
	time.Sleep(time.Second)
	for _, d := range devs {
		if st := d.fo.Status(); st.State != failover.Alternate || st.PrimaryHealthy {
			t.Fatalf("the primary's probes went through the alternate: %+v", st)
		}
	}

	// Flap A ten times inside the hold-down, then leave it up.
	for i := 0; i < 10; i++ {
		s.cut(t, "gw-a", false)
		time.Sleep(300 * time.Millisecond)
		s.cut(t, "gw-a", true)
		time.Sleep(300 * time.Millisecond)
		for _, d := range devs {
			if st := d.fo.Status(); st.State != failover.Alternate {
				t.Fatalf("flap %d: switched back inside the hold-down: %+v", i, st)
			}
		}
	}
	s.cut(t, "gw-a", false)
	restored := time.Now()
	for _, d := range devs {
		waitState(t, d.fo, failover.Primary, 10*time.Second)
		if el := time.Since(restored); el < 3*time.Second {
			t.Fatalf("failed back after %s, before the 3 s hold-down", el)
		}
		if gw := defaultGW(t, d.ns); gw != gwA.String() {
			t.Fatalf("default route via %s after failing back, want %s", gw, gwA)
		}
		if st := d.fo.Status(); st.Switches != 2 {
			t.Fatalf("%d switches, want one each way: %+v", st.Switches, st)
		}
	}
	cancel()
	for range devs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Run leaves no rule behind.
	for _, d := range devs {
		_ = nsdo.Do(d.ns, func() error {
			rules, _ := netlink.RuleList(netlink.FAMILY_V4)
			for _, r := range rules {
				if r.Table == 239 {
					t.Errorf("policy rule left behind: %+v", r)
				}
			}
			return nil
		})
	}
}

// A store with one gateway: nowhere to go. It is marked degraded, its
// route is left alone, and it says the link is not usable.
func TestStoreWithoutAlternateIsDegraded(t *testing.T) {
	s := up(t)
	pos, _ := s.f.NetnsMember("pos")
	gw := s.addr(t, "store-gw")
	fo, err := failover.New(failover.Config{Primary: gw, Targets: []string{s.cloud}, Interval: 200 * time.Millisecond, HoldDown: 2 * time.Second, Netns: pos.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fo.Run(ctx)
	time.Sleep(time.Second)
	s.cut(t, "store-gw", true)
	waitState(t, fo, failover.Degraded, 9*time.Second)
	if fo.IsOpen() || defaultGW(t, pos.Namespace) != gw.String() {
		t.Fatalf("degraded: open %v, route via %s", fo.IsOpen(), defaultGW(t, pos.Namespace))
	}
	s.cut(t, "store-gw", false)
	waitState(t, fo, failover.Primary, 8*time.Second)
	if !fo.IsOpen() {
		t.Fatal("not open after recovery")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []failover.Config{
		{Targets: []string{"1.2.3.4:80"}},
		{Primary: netip.MustParseAddr("10.0.0.1")},
		{Primary: netip.MustParseAddr("10.0.0.1"), Targets: []string{"nohost"}},
		{Primary: netip.MustParseAddr("10.0.0.1"), Targets: []string{"1.2.3.4:80"}, Window: 2, FailAfter: 3},
	} {
		if _, err := failover.New(tc); err == nil {
			t.Errorf("accepted %+v", tc)
		}
	}
}

// The probes' mark must not carry a bit cluster networking acts on:
// kube-proxy drops packets marked 0x8000, so the first mark (0xef01) made
// every probe to a Service time out on a real node.
func TestDefaultMarkAvoidsClusterNetworkingBits(t *testing.T) {
	if failover.DefaultMark&failover.ReservedMarkBits != 0 {
		t.Fatalf("mark %#x shares bits %#x with kube-proxy/Cilium/Calico", failover.DefaultMark, failover.DefaultMark&failover.ReservedMarkBits)
	}
}
