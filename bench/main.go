// Command bench measures the shaper and the embedded fleet against their
// targets and prints tables (make bench). Every figure is measured in this
// run, baselines included: real namespaces, real TCP and UDP, real kernel.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/procmem"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

func main() {
	shaper.RunHelperIfInvoked()
	kind.RunRuntimeWrapperIfInvoked()
	only := flag.String("only", "", "comma-separated sections: rate,loss,delay,latency,fleet,clusters,kind,gate,buffer,uplink,regional,failover,certify (default all)")
	quick := flag.Bool("quick", false, "shorter measurements")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench needs root: sudo make bench")
		os.Exit(1)
	}
	if err := run(*only, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(only string, quick bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(benchFailure)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	b := &bench{quick: quick}
	// Under /run like the real ledger (tmpfs: its fsyncs are cheap).
	dir, err := os.MkdirTemp("/run", "edgefault-bench-")
	check(err)
	defer os.RemoveAll(dir)
	b.ledger, err = ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	b.sh, err = shaper.New(shaper.WithLedger(b.ledger, "bench"), shaper.WithStateDir(filepath.Join(dir, "state")))
	check(err)
	defer func() {
		b.sh.Close()
		_ = b.ledger.Sweep("bench", shaper.Removers())
	}()
	caps, _ := shaper.Probe()
	fmt.Printf("edgefault bench — kernel %s, backend %s, %s\n\n", caps.Kernel, b.sh.Backend(), time.Now().UTC().Format(time.RFC3339))
	sections := map[string]func(){"rate": b.rate, "loss": b.loss, "delay": b.delay, "latency": b.latency, "fleet": b.fleet, "clusters": b.clusters, "gate": b.gate, "buffer": b.buffer, "uplink": b.uplink, "regional": b.regional, "failover": b.failover, "certify": b.certify, "kind": b.kind}
	order := []string{"rate", "loss", "delay", "latency", "fleet", "clusters", "kind", "gate", "buffer", "uplink", "regional", "failover", "certify"}
	if only != "" {
		order = strings.Split(only, ",")
	}
	for _, s := range order {
		f, ok := sections[s]
		if !ok {
			return fmt.Errorf("unknown section %q", s)
		}
		f()
		fmt.Println()
	}
	return nil
}

type bench struct {
	quick  bool
	ledger *ledger.Ledger
	sh     *shaper.Shaper
}

// benchFailure carries a fatal error up to main, past the deferred
// cleanups (namespaces, helpers) that os.Exit would skip.
type benchFailure struct{ err error }

func check(err error) {
	if err != nil {
		panic(benchFailure{err})
	}
}

func table(header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, header)
	return tw
}

func star(n int) *traffic.Star {
	s, err := traffic.NewStar(fmt.Sprintf("efb%d", os.Getpid()%100000), n)
	check(err)
	return s
}

func target(s *traffic.Star, i int) shaper.Target {
	return shaper.Target{Link: shaper.Link{Netns: s.Hosts[i], Name: "eth0"}, Peer: &shaper.Link{Netns: s.Fabric, Name: s.Port(i)}}
}

// limiterBytes is what the rate limiter (the root tbf in namespace ns)
// has sent, in link-layer bytes: the kernel counts each segment of a GSO
// super-packet with its own headers there, as on a wire. Interface
// counters would not: they count a super-packet's headers once.
func limiterBytes(ns string) uint64 {
	h, err := vnetns.GetFromName(ns)
	check(err)
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	check(err)
	defer nl.Close()
	qs, err := nl.QdiscList(nil)
	check(err)
	for _, q := range qs {
		if q.Type() == "tbf" && q.Attrs().Parent == netlink.HANDLE_ROOT && q.Attrs().Statistics != nil {
			return q.Attrs().Statistics.Basic.Bytes
		}
	}
	check(fmt.Errorf("no root tbf in %s", ns))
	return 0
}

func pass(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// rate: goodput and link-layer rate against the configured rate.
func (b *bench) rate() {
	fmt.Println("== Rate accuracy (TCP, 5 s after 1 s warm-up; target goodput/configured >= 0.95, link-layer 0.98-1.02)")
	s := star(2)
	defer s.Close()
	ctx := context.Background()
	tw := table("direction\tconfigured\tgoodput\tgoodput/conf\tlink-layer/conf\tmeets target\t")
	d := 5 * time.Second
	if b.quick {
		d = 2 * time.Second
	}
	for _, dir := range []shaper.Direction{shaper.Egress, shaper.Ingress} {
		for _, r := range []shaper.Rate{1 * shaper.Mbit, 5 * shaper.Mbit, 20 * shaper.Mbit, 100 * shaper.Mbit} {
			check(b.sh.Apply(ctx, target(s, 0), shaper.Impairment{Rate: r, Direction: dir}))
			from, to := 0, 1
			if dir == shaper.Ingress {
				from, to = 1, 0
			}
			var b0, b1 uint64
			var t0, t1 time.Time
			tr, err := traffic.TCPThroughputWindow(ctx, s.Hosts[from], s.Hosts[to], s.Addr(to)+":0", time.Second, d, func(open bool) {
				if open {
					b0, t0 = limiterBytes(s.Fabric), time.Now()
				} else {
					b1, t1 = limiterBytes(s.Fabric), time.Now()
				}
			})
			check(err)
			g := tr.Goodput() / float64(r)
			ll := float64(b1-b0) * 8 / t1.Sub(t0).Seconds() / float64(r)
			fmt.Fprintf(tw, "%s\t%v\t%.3f Mbit/s\t%.3f\t%.3f\t%s\t\n", dir, r, tr.Goodput()/1e6, g, ll, pass(g >= 0.95 && ll >= 0.98 && ll <= 1.02))
		}
	}
	check(b.sh.Clear(ctx, target(s, 0)))
	tw.Flush()
}

// loss: UDP packets received against the binomial 99% interval.
func (b *bench) loss() {
	n := 20000
	if b.quick {
		n = 5000
	}
	fmt.Printf("== Loss accuracy (%d UDP datagrams per row, judged at the receiver; target: inside the 99%% binomial interval)\n", n)
	s := star(2)
	defer s.Close()
	ctx := context.Background()
	tw := table("direction\tconfigured\treceived\tmeasured loss\t99% interval\tmeets target\t")
	for _, dir := range []shaper.Direction{shaper.Egress, shaper.Ingress} {
		for _, p := range []float64{1, 10, 25} {
			check(b.sh.Apply(ctx, target(s, 0), shaper.Impairment{Loss: p, Direction: dir}))
			from, to := 0, 1
			if dir == shaper.Ingress {
				from, to = 1, 0
			}
			got, err := traffic.UDPTrain(ctx, s.Hosts[from], s.Hosts[to], s.Addr(to)+":0", n, 200, 10000)
			check(err)
			q := p / 100
			half := 2.576 * math.Sqrt(q*(1-q)/float64(n))
			meas := 1 - float64(got)/float64(n)
			fmt.Fprintf(tw, "%s\t%g%%\t%d/%d\t%.2f%%\t%.2f-%.2f%%\t%s\t\n", dir, p, got, n, 100*meas, 100*(q-half), 100*(q+half), pass(math.Abs(meas-q) <= half))
		}
	}
	check(b.sh.Clear(ctx, target(s, 0)))
	tw.Flush()
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(d)))) - 1
	if i < 0 {
		i = 0
	}
	return d[i]
}

func mean(d []time.Duration) time.Duration {
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(max(1, len(d)))
}

// delay: added one-way delay per hook, from UDP echo round trips minus the
// unshaped round trip measured in the same run.
func (b *bench) delay() {
	probes := 300
	if b.quick {
		probes = 100
	}
	fmt.Printf("== Delay accuracy (%d UDP echoes per row; added delay = RTT - unshaped RTT; target: mean within ±2 ms, p99 within +5 ms)\n", probes)
	s := star(2)
	defer s.Close()
	ctx := context.Background()
	addr, stop, err := traffic.Echo(s.Hosts[1], s.Addr(1)+":0")
	check(err)
	defer stop()
	rtt := func() []time.Duration {
		r, err := traffic.RTTs(ctx, s.Hosts[0], addr.String(), probes, 5*time.Millisecond)
		check(err)
		return r
	}
	base := rtt()
	bm := mean(base)
	fmt.Printf("unshaped RTT: mean %v, p99 %v\n", bm.Round(time.Microsecond), pct(base, 0.99).Round(time.Microsecond))
	tw := table("hook\tdirection\tconfigured\tmean added\tp99 added\tanswered\tmeets target\t")
	noPeer := shaper.Target{Link: shaper.Link{Netns: s.Hosts[0], Name: "eth0"}}
	for _, row := range []struct {
		hook string
		t    shaper.Target
		dir  shaper.Direction
	}{
		{"peer prerouting (br_netfilter)", target(s, 0), shaper.Egress},
		{"own prerouting", target(s, 0), shaper.Ingress},
		{"own postrouting (no peer)", noPeer, shaper.Egress},
	} {
		for _, d := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
			check(b.sh.Apply(ctx, row.t, shaper.Impairment{Delay: d, Direction: row.dir}))
			r := rtt()
			check(b.sh.Clear(ctx, row.t))
			added := mean(r) - bm
			p99 := pct(r, 0.99) - bm
			ok := (added-d).Abs() <= 2*time.Millisecond && p99-d <= 5*time.Millisecond && len(r) >= probes*99/100
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%d/%d\t%s\t\n", row.hook, row.dir, d, added.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), len(r), probes, pass(ok))
		}
	}
	tw.Flush()
	// Jitter: the mean stays, the spread covers the range, nothing reorders.
	fmt.Println("\nJitter (peer prerouting, egress, probes a jitter apart; target: mean added within ±2 ms, 1st-99th percentile inside delay±jitter (+5 ms))")
	tw = table("configured\tmean added\tp1 added\tp99 added\tanswered\tmeets target\t")
	for _, dj := range [][2]time.Duration{{50 * time.Millisecond, 10 * time.Millisecond}, {100 * time.Millisecond, 20 * time.Millisecond}} {
		d, j := dj[0], dj[1]
		check(b.sh.Apply(ctx, target(s, 0), shaper.Impairment{Delay: d, Jitter: j, Direction: shaper.Egress}))
		// Probes a jitter apart: the offset moves at most the spacing
		// between packets, so sparser probes sample it more independently.
		// A correlated offset needs more samples for a steady mean.
		jp := 4 * probes
		r, err := traffic.RTTs(ctx, s.Hosts[0], addr.String(), jp, j)
		check(err)
		check(b.sh.Clear(ctx, target(s, 0)))
		added := mean(r) - bm
		p1, p99 := pct(r, 0.01)-bm, pct(r, 0.99)-bm
		ok := (added-d).Abs() <= 2*time.Millisecond && p1 >= d-j-time.Millisecond && p99 <= d+j+5*time.Millisecond && len(r) >= jp*99/100
		fmt.Fprintf(tw, "%v ± %v\t%v\t%v\t%v\t%d/%d\t%s\t\n", d, j, added.Round(10*time.Microsecond), p1.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), len(r), jp, pass(ok))
	}
	tw.Flush()
	// What holding packets on the sender's own hook does to its TCP.
	fmt.Println("\nTCP goodput under 50 ms egress delay, no rate cap (the sender's own hook holds its packets: TCP small queues throttle it)")
	tw = table("hook\tgoodput\t")
	for _, row := range []struct {
		hook string
		t    shaper.Target
	}{{"peer prerouting (br_netfilter)", target(s, 0)}, {"own postrouting (no peer)", noPeer}} {
		check(b.sh.Apply(ctx, row.t, shaper.Impairment{Delay: 50 * time.Millisecond, Direction: shaper.Egress}))
		tr, err := traffic.TCPThroughput(ctx, s.Hosts[0], s.Hosts[1], s.Addr(1)+":0", time.Second, 3*time.Second)
		check(err)
		check(b.sh.Clear(ctx, row.t))
		fmt.Fprintf(tw, "%s\t%.1f Mbit/s\t\n", row.hook, tr.Goodput()/1e6)
	}
	tw.Flush()
}

// latency: apply+clear of a rate limit through the shaper (netlink, with
// its ledger and state) against the same change made by the tc command.
func (b *bench) latency() {
	n := 200
	fmt.Printf("== Apply+clear latency of a 5mbit rate limit on one link (%d rounds each; target: netlink >= 10x faster than tc)\n", n)
	s := star(1)
	defer s.Close()
	ctx := context.Background()
	t := target(s, 0)
	imp := shaper.Impairment{Rate: 5 * shaper.Mbit, Direction: shaper.Ingress}
	var sd []time.Duration
	for i := 0; i < n; i++ {
		st := time.Now()
		check(b.sh.Apply(ctx, t, imp))
		check(b.sh.Clear(ctx, t))
		sd = append(sd, time.Since(st))
	}
	var td []time.Duration
	if _, err := exec.LookPath("tc"); err != nil {
		fmt.Println("tc (iproute2) is not installed: no baseline")
		return
	}
	for i := 0; i < n; i++ {
		st := time.Now()
		check(exec.Command("tc", "-n", s.Fabric, "qdisc", "replace", "dev", s.Port(0), "root", "tbf", "rate", "5mbit", "burst", "4096", "limit", "35346").Run())
		check(exec.Command("tc", "-n", s.Fabric, "qdisc", "del", "dev", s.Port(0), "root").Run())
		td = append(td, time.Since(st))
	}
	sort.Slice(sd, func(i, j int) bool { return sd[i] < sd[j] })
	sort.Slice(td, func(i, j int) bool { return td[i] < td[j] })
	tw := table("method\tmedian\tp90\tspeed-up vs tc\tmeets target\t")
	ms, mt := pct(sd, 0.5), pct(td, 0.5)
	fmt.Fprintf(tw, "tc command (iproute2), 2 execs\t%v\t%v\t1.0x\t-\t\n", mt.Round(time.Microsecond), pct(td, 0.9).Round(time.Microsecond))
	fmt.Fprintf(tw, "shaper Apply+Clear (netlink, ledger, state)\t%v\t%v\t%.1fx\t%s\t\n", ms.Round(time.Microsecond), pct(sd, 0.9).Round(time.Microsecond), float64(mt)/float64(ms), pass(float64(mt)/float64(ms) >= 10))
	tw.Flush()
}

// fleet: time to bring up and take down fleets whose every node is shaped,
// and what is left afterwards.
func (b *bench) fleet() {
	fmt.Println("== Fleet up/down, every node's link shaped to 5mbit (targets for 500 nodes: up <= 3 s, down <= 2 s, zero residue)")
	dir, err := os.MkdirTemp("/run", "edgefault-bench-fleet-")
	check(err)
	defer os.RemoveAll(dir)
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithLogger(discard()))
	check(err)
	tw := table("nodes\tsites\tnamespaces\tup\tdown\tresidue\tmeets target\t")
	for _, n := range []int{100, 500} {
		sites := n / 50
		spec := &scenarios.FleetSpec{}
		for i := 0; i < sites; i++ {
			st := scenarios.Site{Name: fmt.Sprintf("s%d", i), Gateway: &scenarios.Gateway{Name: fmt.Sprintf("gw%d", i)}}
			for k := 0; k < 50; k++ {
				st.Nodes = append(st.Nodes, scenarios.Node{Name: fmt.Sprintf("s%d-n%d", i, k), Link: &scenarios.LinkProfile{Rate: scenarios.SameRate("5mbit")}})
			}
			spec.Sites = append(spec.Sites, st)
		}
		name := fmt.Sprintf("bench%d", n)
		t0 := time.Now()
		f, err := p.UpFleet(context.Background(), name, spec)
		check(err)
		up := time.Since(t0)
		members := len(f.Members()) + 1 // + fabric
		t1 := time.Now()
		check(p.Down(context.Background(), name))
		down := time.Since(t1)
		residue := residue(name, l)
		ok := residue == "none"
		if n == 500 {
			ok = ok && up <= 3*time.Second && down <= 2*time.Second
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%v\t%v\t%s\t%s\t\n", n, sites, members, up.Round(time.Millisecond), down.Round(time.Millisecond), residue, pass(ok))
	}
	tw.Flush()
}

func residue(fleet string, l *ledger.Ledger) string {
	var left []string
	entries, _ := os.ReadDir("/run/netns")
	k := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fleet+"-") {
			k++
		}
	}
	if k > 0 {
		left = append(left, fmt.Sprintf("%d namespaces", k))
	}
	if e, _ := l.Entries(fleet); len(e) > 0 {
		left = append(left, fmt.Sprintf("%d ledger entries", len(e)))
	}
	// A namespace lives on while anything holds it: count the handles this
	// process still has to namespaces other than its own.
	self, _ := os.Readlink("/proc/self/ns/net")
	fds, _ := filepath.Glob("/proc/self/fd/*")
	held := 0
	for _, fd := range fds {
		if t, err := os.Readlink(fd); err == nil && strings.HasPrefix(t, "net:[") && t != self {
			held++
		}
	}
	if held > 0 {
		left = append(left, fmt.Sprintf("%d namespaces held open", held))
	}
	if len(left) == 0 {
		return "none"
	}
	return strings.Join(left, ", ")
}

// clusters: a site's control plane as it was (every component, default
// settings) and lean (etcd, apiserver, kwok; memory limits), in the same
// run; then 30 lean sites, the time to Ready and the memory they take.
func (b *bench) clusters() {
	fmt.Println("== Site control planes (targets: a lean site <= 250 MiB in a fleet; 30 lean sites Ready <= 90 s)")
	fmt.Println("   RSS counts the pages of a binary shared by every site in each; PSS divides them among the sites")
	cache := k8sbin.Cache{Dir: k8sbin.DefaultDir()}
	for _, c := range k8sbin.Components() {
		if _, err := cache.Lookup(c.Name); err != nil {
			fmt.Println("skipped:", err)
			return
		}
	}
	dir, err := os.MkdirTemp("/run", "edgefault-bench-k8s-")
	check(err)
	defer os.RemoveAll(dir)
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	memory := func(owner string) (rss, pss uint64, n int) {
		// A moment for the start-up garbage to be collected.
		time.Sleep(10 * time.Second)
		entries, _ := l.Entries(owner)
		for _, e := range entries {
			if e.Kind == ledger.KindProcess && strings.Contains(e.Name, " of site ") {
				n++
				rss += procmem.RSS(e.PID)
				pss += procmem.PSS(e.PID)
			}
		}
		return rss, pss, n
	}
	tw := table("control plane\tcomponents\tsites\tReady after\tprocesses\tRSS a site\tPSS a site\tPSS in all\tmeets target\t")
	// Before: every component, default settings; three sites, one after
	// another.
	{
		var cps []*controlplane.ControlPlane
		defer func() {
			for _, cp := range cps {
				_ = cp.Stop()
			}
		}()
		start := time.Now()
		for i := 0; i < 3; i++ {
			cp, err := controlplane.Start(context.Background(), controlplane.Options{Site: fmt.Sprintf("full%d", i), Dir: filepath.Join(dir, fmt.Sprintf("full%d", i)),
				Bin: cache, Ledger: l, Owner: "benchfull", Log: discard(), Workloads: true})
			check(err)
			cps = append(cps, cp)
		}
		up := time.Since(start)
		rss, pss, n := memory("benchfull")
		fmt.Fprintf(tw, "before (baseline)\t%s\t3\t%v\t%d\t%.0f MiB\t%.0f MiB\t%.2f GiB\t-\t\n", strings.Join(cps[0].Components(), ", "), up.Round(10*time.Millisecond), n,
			float64(rss)/3/(1<<20), float64(pss)/3/(1<<20), float64(pss)/(1<<30))
		for _, cp := range cps {
			check(cp.Stop())
		}
		cps = nil
	}
	// Lean: the embedded fleet's default, 30 sites of a gateway and a node.
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithLogger(discard()), netns.WithControlPlanes(cache))
	check(err)
	spec := &scenarios.FleetSpec{}
	const sites = 30
	for i := 0; i < sites; i++ {
		spec.Sites = append(spec.Sites, scenarios.Site{Name: fmt.Sprintf("s%d", i), Gateway: &scenarios.Gateway{Name: fmt.Sprintf("s%d-gw", i)}, NodeCount: 1})
	}
	defer func() { _ = p.Down(context.Background(), "benchk8s") }()
	start := time.Now()
	f, err := p.UpFleet(context.Background(), "benchk8s", spec)
	check(err)
	up := time.Since(start)
	rss, pss, n := memory("benchk8s")
	comps := ""
	if sc, err := f.Cluster("s0"); err == nil {
		comps = strings.Join(sc.Components, ", ")
	}
	per := float64(pss) / sites / (1 << 20)
	fmt.Fprintf(tw, "lean (netns default)\t%s\t%d\t%v\t%d\t%.0f MiB\t%.0f MiB\t%.2f GiB\t%s\t\n", comps, sites, up.Round(10*time.Millisecond), n,
		float64(rss)/sites/(1<<20), per, float64(pss)/(1<<30), pass(per <= 250 && up <= 90*time.Second))
	tw.Flush()
	fmt.Println("\nFirst-time build of the binaries (edgefault setup on a fresh cache, as recorded when they were built):")
	tw = table("component\tversion\tbuild time\t")
	for _, c := range k8sbin.Components() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", c.Name, c.Version, cache.BuildTime(c.Name))
	}
	tw.Flush()
}
