package netns_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

func TestMain(m *testing.M) {
	shaper.RunHelperIfInvoked()
	os.Exit(m.Run())
}

// up brings up the built-in fleet under a test-unique name with its own
// ledger; it is taken down when the test ends.
func up(t *testing.T, name string, spec *scenarios.FleetSpec) (*netns.Provider, *netns.Fleet) {
	t.Helper()
	p, _ := provider(t)
	if spec == nil {
		spec = &scenarios.Default().Spec
	}
	f, err := p.UpFleet(context.Background(), name, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Down(context.Background(), name); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	return p, f
}

// provider is a provider with a ledger of the test's own.
func provider(t *testing.T) (*netns.Provider, *ledger.Ledger) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root)")
	}
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := netns.NewProvider(netns.WithLedger(l))
	if err != nil {
		t.Fatal(err)
	}
	return p, l
}

// remoteSeen dials the cloud from member and returns the address the
// cloud saw the connection come from.
func remoteSeen(t *testing.T, f *netns.Fleet, member string) string {
	t.Helper()
	cloud, _ := f.NetnsMember("cloud")
	l, err := traffic.Listen(cloud.Namespace, "tcp4", cloud.Address+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		seen <- strings.Split(c.RemoteAddr().String(), ":")[0]
		c.Close()
	}()
	m, _ := f.NetnsMember(member)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := traffic.Dial(ctx, m.Namespace, "tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("%s cannot reach the cloud: %v", member, err)
	}
	defer c.Close()
	return <-seen
}

func TestFleetRoutesThroughGatewaysWithMasquerade(t *testing.T) {
	_, f := up(t, fmt.Sprintf("t%d-a", os.Getpid()%10000), nil)
	for _, tc := range []struct{ node, gw string }{
		{"store-pos", "store-gw"}, {"truck-1", "truck-gw"}, {"factory-a1", "factory-gw-a"}, {"factory-b2", "factory-gw-b"},
	} {
		gw, _ := f.NetnsMember(tc.gw)
		if got := remoteSeen(t, f, tc.node); got != gw.WANAddress {
			t.Errorf("cloud saw %s come from %s, want its gateway %s's WAN address %s", tc.node, got, tc.gw, gw.WANAddress)
		}
	}
	// A factory device reaches the other building's gateway on the LAN.
	gwb, _ := f.NetnsMember("factory-gw-b")
	a1, _ := f.NetnsMember("factory-a1")
	ctx := context.Background()
	addr, stop, err := traffic.Echo(gwb.Namespace, gwb.Address+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rtts, err := traffic.RTTs(ctx, a1.Namespace, addr.String(), 3, 10*time.Millisecond)
	if err != nil || len(rtts) != 3 {
		t.Fatalf("factory-a1 -> factory-gw-b over the LAN: %d answers, %v", len(rtts), err)
	}
	// Every member is a named namespace <fleet>-<name>.
	for _, mm := range f.Members() {
		m, _ := f.NetnsMember(mm.Name)
		if _, err := os.Stat("/run/netns/" + m.Namespace); err != nil || m.Namespace != f.Name()+"-"+m.Name {
			t.Errorf("member %s: namespace %q: %v", m.Name, m.Namespace, err)
		}
	}
	if _, err := f.Target("nosuch"); err == nil || !strings.Contains(err.Error(), "has no node or gateway") {
		t.Errorf("unknown member: %v", err)
	}
}

func TestTwoFleetsSideBySide(t *testing.T) {
	_, f1 := up(t, fmt.Sprintf("t%d-b", os.Getpid()%10000), nil)
	_, f2 := up(t, fmt.Sprintf("t%d-c", os.Getpid()%10000), nil)
	// Same addresses, separate worlds.
	for _, f := range []*netns.Fleet{f1, f2} {
		gw, _ := f.NetnsMember("store-gw")
		if got := remoteSeen(t, f, "store-pos"); got != gw.WANAddress {
			t.Errorf("fleet %s: cloud saw %s", f.Name(), got)
		}
	}
	// Cutting an uplink in one fleet leaves the other alone.
	sh, err := f1.Shaper()
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	tg, _ := f1.Target("store-gw")
	if err := sh.Apply(context.Background(), tg, shaper.Impairment{Outage: true}); err != nil {
		t.Fatal(err)
	}
	cloud2, _ := f2.NetnsMember("cloud")
	pos2, _ := f2.NetnsMember("store-pos")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, _ := traffic.Listen(cloud2.Namespace, "tcp4", cloud2.Address+":0")
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := traffic.Dial(ctx, pos2.Namespace, "tcp4", l.Addr().String()); err != nil {
		t.Errorf("fleet 2 lost its uplink when fleet 1's was cut: %v", err)
	} else {
		c.Close()
	}
	cloud1, _ := f1.NetnsMember("cloud")
	pos1, _ := f1.NetnsMember("store-pos")
	l1, _ := traffic.Listen(cloud1.Namespace, "tcp4", cloud1.Address+":0")
	defer l1.Close()
	ctx1, cancel1 := context.WithTimeout(context.Background(), time.Second)
	defer cancel1()
	if c, err := traffic.Dial(ctx1, pos1.Namespace, "tcp4", l1.Addr().String()); err == nil {
		c.Close()
		t.Error("fleet 1's store reached the cloud through a cut uplink")
	}
}

func TestUplinkRateAppliesToTheWholeSite(t *testing.T) {
	_, f := up(t, fmt.Sprintf("t%d-d", os.Getpid()%10000), &scenarios.FleetSpec{Sites: []scenarios.Site{
		{Name: "s1", Gateway: &scenarios.Gateway{Name: "gw1", Uplink: &scenarios.LinkProfile{Rate: scenarios.SameRate("4mbit")}}, Nodes: []scenarios.Node{{Name: "a"}}},
		{Name: "s2", Gateway: &scenarios.Gateway{Name: "gw2"}, Nodes: []scenarios.Node{{Name: "b"}}},
	}})
	ctx := context.Background()
	cloud, _ := f.NetnsMember("cloud")
	for _, tc := range []struct {
		node     string
		min, max float64
	}{{"a", 3.2e6, 4.1e6}, {"b", 20e6, 1e12}} {
		m, _ := f.NetnsMember(tc.node)
		tr, err := traffic.TCPThroughput(ctx, m.Namespace, cloud.Namespace, cloud.Address+":0", time.Second, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s -> cloud: %.2f Mbit/s", tc.node, tr.Goodput()/1e6)
		if g := tr.Goodput(); g < tc.min || g > tc.max {
			t.Errorf("%s -> cloud at %.2f Mbit/s, want %.1f-%.1f", tc.node, g/1e6, tc.min/1e6, tc.max/1e6)
		}
	}
}

func TestProcessRunsInMemberNamespace(t *testing.T) {
	_, f := up(t, fmt.Sprintf("t%d-e", os.Getpid()%10000), nil)
	var out strings.Builder
	if err := f.Exec(context.Background(), "store-pos", []string{"cat", "/proc/net/route"}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	// The store's default route (destination 00000000) via its gateway on eth0.
	if !strings.Contains(out.String(), "eth0\t00000000") {
		t.Fatalf("store-pos routes:\n%s", out.String())
	}
	p, err := f.Start(context.Background(), "cloud", "sleeper", []string{"sleep", "60"})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.PID))
	cloudNS, _ := os.Stat("/run/netns/" + f.Name() + "-cloud")
	var want string
	if cloudNS != nil {
		want = fmt.Sprintf("net:[%d]", inode(cloudNS))
	}
	if self != want {
		t.Errorf("process runs in %s, want the cloud's %s", self, want)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := syscallKill0(p.PID); err == nil {
		t.Error("process still running after Stop")
	}
	// Output is captured in the process's log.
	q, err := f.Start(context.Background(), "truck-1", "hello", []string{"sh", "-c", "echo hello from $(cat /proc/net/route | wc -l) routes"})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(q.Log); !strings.Contains(string(b), "hello from 3 routes") {
		t.Errorf("log %s holds %q", q.Log, b)
	}
}

// Member names can meet across fleets: fleet "X-a" with a node "b-cloud"
// owns the namespace X-a-b-cloud, which is also fleet "X-a-b"'s cloud.
// The second fleet is refused before it records or creates anything, so
// cleaning it up can never delete the first fleet's namespace.
func TestFleetNamespacesNeverCollide(t *testing.T) {
	base := fmt.Sprintf("t%d", os.Getpid()%10000)
	p, f := up(t, base+"-a", &scenarios.FleetSpec{Sites: []scenarios.Site{
		{Name: "s", Gateway: &scenarios.Gateway{Name: "gw"}, Nodes: []scenarios.Node{{Name: "b-cloud"}}},
	}})
	_, err := p.UpFleet(context.Background(), base+"-a-b", &scenarios.Default().Spec)
	if err == nil || !strings.Contains(err.Error(), base+"-a-b-cloud already exists") {
		t.Fatalf("second fleet: %v", err)
	}
	if err := p.Sweep(base + "-a-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + base + "-a-b-cloud"); err != nil {
		t.Fatalf("the first fleet's node namespace is gone: %v", err)
	}
	if m, _ := f.NetnsMember("b-cloud"); m.Namespace != base+"-a-b-cloud" {
		t.Fatalf("member namespace %q", m.Namespace)
	}
}

// A harness killed between creating a namespace's file and bind-mounting
// the namespace on it leaves a plain file; the sweep removes it instead
// of failing on it (and leaving everything after it).
func TestSweepRemovesAnUnmountedNamespaceFile(t *testing.T) {
	p, l := provider(t)
	name := fmt.Sprintf("efsweep%d-x", os.Getpid()%100000)
	path := filepath.Join("/run/netns", name)
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
	owner := fmt.Sprintf("efsweep%d", os.Getpid()%100000)
	if err := l.Record(owner, ledger.Entry{Kind: ledger.KindNetns, Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := p.Sweep(owner); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s is still there (%v)", path, err)
	}
}

// An Up that fails half-way (here: the network is built, then the control
// planes cannot start) takes down what it made before it returns: a
// user's suite is never left a half-built fleet to clean up.
func TestFailedUpTakesItselfDown(t *testing.T) {
	_, l := provider(t)
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithControlPlanes(k8sbin.Cache{Dir: t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("fail%d", os.Getpid()%10000)
	_, err = p.Up(context.Background(), name, &scenarios.Default().Spec)
	if err == nil {
		_ = p.Down(context.Background(), name)
		t.Fatal("Up succeeded without control-plane binaries")
	}
	if strings.Contains(err.Error(), "cleanup") {
		t.Errorf("the error sends the user to clean up: %v", err)
	}
	if names, _ := p.List(context.Background()); slices.Contains(names, name) {
		t.Errorf("fleet %s is still listed after a failed Up", name)
	}
	if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if es, err := l.Entries(name); err != nil || len(es) > 0 {
		t.Errorf("ledger entries left: %v %v", es, err)
	}
}

// Two racing Ups of one name: one fleet comes up, the other Up fails
// without touching it (its clean-up must not take the winner's
// namespaces), and Down then removes everything.
func TestRacingUpsOfOneName(t *testing.T) {
	p, l := provider(t)
	name := fmt.Sprintf("race%d", os.Getpid()%10000)
	spec := &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "s", Gateway: &scenarios.Gateway{Name: "gw"}, Nodes: []scenarios.Node{{Name: "n1"}}}}}
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := p.Up(context.Background(), name, spec)
			errs <- err
		}()
	}
	var failed []error
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	t.Cleanup(func() { _ = p.Down(context.Background(), name) })
	if len(failed) != 1 {
		t.Fatalf("%d of 2 racing Ups failed: %v", len(failed), failed)
	}
	if !strings.Contains(failed[0].Error(), "another edgefault") && !strings.Contains(failed[0].Error(), "already exists") {
		t.Errorf("the loser says %v", failed[0])
	}
	f, err := p.Load(name)
	if err != nil || !f.Ready {
		t.Fatalf("the winner's fleet: %v", err)
	}
	for _, m := range f.All {
		if _, err := os.Stat("/run/netns/" + m.Namespace); err != nil {
			t.Errorf("the winner lost namespace %s: %v", m.Namespace, err)
		}
	}
	if err := p.Down(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	if es, _ := l.Entries(name); len(es) > 0 {
		t.Errorf("ledger entries left: %+v", es)
	}
}

// Cleanup leaves alone a fleet that is being brought up or taken down:
// that Up or Down finishes, or removes, its own.
func TestSweepSkipsABusyFleet(t *testing.T) {
	p, l := provider(t)
	name := fmt.Sprintf("busy%d", os.Getpid()%10000)
	if err := l.Record(name, ledger.Entry{Kind: ledger.KindState, Name: filepath.Join(filepath.Dir(l.Dir()), "fleets", name+".json")}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(l.Dir()), "fleets", name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	err = p.Sweep(name)
	if err == nil || !strings.Contains(err.Error(), "another edgefault") {
		t.Errorf("sweep of a busy fleet: %v", err)
	}
	if es, _ := l.Entries(name); len(es) != 1 {
		t.Errorf("the busy fleet's ledger was touched: %+v", es)
	}
	f.Close() // the other process is done
	if err := p.Sweep(name); err != nil {
		t.Fatal(err)
	}
}
