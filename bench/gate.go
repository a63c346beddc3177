package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
)

// linkBytes is what crossed a member's link (both directions, as the
// kernel counts them: headers, ACKs and all).
func linkBytes(ns, dev string) uint64 {
	var n uint64
	check(nsdo.Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		s := l.Attrs().Statistics
		n = s.RxBytes + s.TxBytes
		return nil
	}))
	return n
}

func edgeguardBin() string {
	if p := os.Getenv("EDGEGUARD"); p != "" {
		return p
	}
	if _, err := os.Stat("bin/edgeguard"); err == nil {
		p, _ := filepath.Abs("bin/edgeguard")
		return p
	}
	check(fmt.Errorf("edgeguard binary not found: run 'make build' or set $EDGEGUARD"))
	return ""
}

// gate compares the speed gate's budgeted probing with the talk's method
// (a full download test, then a 5 s pause, forever) on the same shaped link
// of a fleet node, one method at a time: the link's own byte counters over
// a steady-state window, then the time from a drop to a verdict.
func (b *bench) gate() {
	fmt.Println("== Speed gate vs the talk's method (full speed test, 5 s pause, repeat) on the same shaped node link")
	fmt.Println("   threshold = half the link; the drop goes to a fifth of it. Targets: probing <= 2% of capacity, drop to closed <= 5 s")
	eg := edgeguardBin()
	ctx := context.Background()
	f, cloud, sh, t, node, done := cloudNode("bg", eg)
	defer done()
	window := 60 * time.Second
	if b.quick {
		window = 30 * time.Second
	}
	tw := table("link\tthreshold\tmethod\tbytes/min on the link\tshare of capacity\tdrop to closed\tmeets target\t")
	for _, c := range []struct {
		rate  shaper.Rate
		delay time.Duration
	}{{5 * shaper.Mbit, 0}, {50 * shaper.Mbit, 0}, {50 * shaper.Mbit, 25 * time.Millisecond}} {
		rate := c.rate
		thr, drop := rate/2, rate/5
		capacityPerMin := float64(rate) / 8 * 60
		link := rate.String()
		if c.delay > 0 {
			link += fmt.Sprintf(" +%s each way", c.delay)
		}
		shape := func(r shaper.Rate) { check(sh.Apply(ctx, t, shaper.Impairment{Rate: r, Delay: c.delay})) }

		// edgeguard serve with its defaults (2 s interval, 2% budget, 10 s full test).
		shape(rate)
		g, err := harness.StartGate(ctx, f, eg, "n1", cloud, "--min-download="+thr.String())
		check(err)
		_, err = g.WaitState(ctx, wire.Open, 90*time.Second)
		check(err)
		time.Sleep(3 * time.Second) // past the full test
		b0 := linkBytes(node.Namespace, "eth0")
		time.Sleep(window)
		perMin := float64(linkBytes(node.Namespace, "eth0")-b0) * float64(time.Minute) / float64(window)
		shape(drop)
		t0 := time.Now()
		st, err := g.WaitState(ctx, wire.Closed, 60*time.Second)
		check(err)
		ttc := st.Since.Sub(t0)
		g.Stop()
		share := perMin / capacityPerMin
		fmt.Fprintf(tw, "%s\t%s\tedgeguard gate\t%.2f MB\t%.2f%%\t%s\t%s\t\n", link, thr, perMin/1e6, share*100, ttc.Round(10*time.Millisecond), pass(share <= 0.02 && ttc <= 5*time.Second))

		// The talk's method, measured the same way.
		shape(rate)
		ev := filepath.Join(f.Dir(), "evidence", fmt.Sprintf("talk-%s-%s.jsonl", rate, c.delay))
		proc, err := f.Start(ctx, "n1", "talk", []string{eg, "speedtest", "--node=n1", "--server=" + cloud.SpeedURL, "--count=0", "--pause=5s", "--min-download=" + thr.String(), "--events=" + ev})
		check(err)
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err = events.Wait(wctx, ev, func(e wire.Event) bool { return e.Event == "speedtest" })
		cancel()
		check(err)
		b0 = linkBytes(node.Namespace, "eth0")
		time.Sleep(window)
		perMin = float64(linkBytes(node.Namespace, "eth0")-b0) * float64(time.Minute) / float64(window)
		shape(drop)
		t0 = time.Now()
		wctx, cancel = context.WithTimeout(ctx, 90*time.Second)
		e, err := events.Wait(wctx, ev, func(e wire.Event) bool {
			return e.Event == "speedtest" && e.Time.After(t0) && e.Fields["verdict"] == "bad"
		})
		cancel()
		check(err)
		ttc = e.Time.Sub(t0)
		_ = proc.Stop(2 * time.Second)
		// One drop lands somewhere in a test-and-pause cycle: the verdict
		// comes 0 to one cycle later. Say how long a cycle is.
		var cycle time.Duration
		if evs, _ := events.Read(ev); len(evs) > 2 {
			cycle = evs[len(evs)-1].Time.Sub(evs[0].Time) / time.Duration(len(evs)-1)
		}
		share = perMin / capacityPerMin
		fmt.Fprintf(tw, "%s\t%s\ttalk: full test every 5 s\t%.2f MB\t%.2f%%\t%s\t%s\t\n", link, thr, perMin/1e6, share*100, fmt.Sprintf("%s (cycle %s)", ttc.Round(10*time.Millisecond), cycle.Round(100*time.Millisecond)), "baseline")
		check(sh.Clear(ctx, t))
	}
	tw.Flush()
}

// oneNode is a site with a gateway and one node, n1.
func oneNode() *scenarios.FleetSpec {
	return &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "s", Gateway: &scenarios.Gateway{Name: "s-gw"}, Nodes: []scenarios.Node{{Name: "n1"}}}}}
}

// benchFleet brings spec up under a ledger of its own in /run and returns
// the fleet and what takes it down and removes every trace.
func benchFleet(prefix string, spec *scenarios.FleetSpec, opts ...netns.Option) (*netns.Fleet, func()) {
	dir, err := os.MkdirTemp("/run", "edgefault-bench-"+prefix+"-")
	check(err)
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	p, err := netns.NewProvider(append([]netns.Option{netns.WithLedger(l), netns.WithLogger(discard())}, opts...)...)
	check(err)
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%10000)
	f, err := p.UpFleet(context.Background(), name, spec)
	check(err)
	return f, func() {
		_ = p.Down(context.Background(), name)
		_ = l.Sweep(name, shaper.Removers())
		_ = os.RemoveAll(dir)
	}
}

// cloudNode brings up oneNode with the cloud's edgeguard services and a
// shaper, and returns n1's target and member; done takes it all down.
func cloudNode(prefix, eg string) (*netns.Fleet, *harness.Cloud, *shaper.Shaper, shaper.Target, netns.Member, func()) {
	f, down := benchFleet(prefix, oneNode())
	cloud, err := harness.StartCloud(context.Background(), f, eg)
	if err != nil {
		down()
		check(err)
	}
	sh, err := f.Shaper()
	check(err)
	t, err := f.Target("n1")
	check(err)
	node, _ := f.NetnsMember("n1")
	return f, cloud, sh, t, node, func() { sh.Close(); cloud.Stop(); down() }
}
