package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/uplinktest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// uplink: three nodes behind one uplink come back from an outage with
// backlogs, paced per node (the baseline: each flushes at its share of
// what its own gate measured and confirms its reopening with a
// full-length test) and as one site (LAN agreement).
func (b *bench) uplink() {
	outage, backlog := 2*time.Minute, 12<<20
	if b.quick {
		outage, backlog = 20*time.Second, 6<<20
	}
	fmt.Printf("== Shared uplink: 3 nodes behind one 50 Mbit/s uplink (40 ms round trip), a %s outage, %d MiB of payload queued on each\n", outage, backlog>>20)
	fmt.Println("   targets: 0 gate flaps after the restore; every gate open within 10 s of it; the site's flush <= 90% of the uplink")
	fmt.Println("   (at the gateway's WAN interface, mean over the drain); drain <= 1.3 x backlog / (80% x uplink), from the first opening")
	eg := edgeguardBin()
	ctx := context.Background()
	spec := &scenarios.FleetSpec{Sites: []scenarios.Site{{
		Name: "depot", Gateway: &scenarios.Gateway{Name: "depot-gw", Uplink: &scenarios.LinkProfile{Rate: scenarios.SameRate("50mbit"), Delay: "20ms"}},
		Nodes: []scenarios.Node{{Name: "depot-1"}, {Name: "depot-2"}, {Name: "depot-3"}},
	}}}
	f, down := benchFleet("bu", spec)
	defer down()
	cloud, err := harness.StartCloud(ctx, f, eg)
	check(err)
	defer cloud.Stop()
	sh, err := f.Shaper()
	check(err)
	defer sh.Close()
	const uplinkBps = 50e6
	tw := table("pacing\tbacklog\tgates open after\tflaps\tgate capacity\tflush mean\tflush p95 (1 s)\tdrain\tdrain/ideal\t429s\tmeets target\t")
	for _, coordinated := range []bool{false, true} {
		name, tag := "per node (baseline)", "alone"
		if coordinated {
			name, tag = "site (LAN agreement)", "site"
		}
		res, err := uplinktest.Run(ctx, uplinktest.Options{
			Fleet: f, Cloud: cloud, Shaper: sh, Edgeguard: eg,
			Gateway: "depot-gw", Nodes: []string{"depot-1", "depot-2", "depot-3"},
			Uplink: shaper.Impairment{Rate: 50 * shaper.Mbit, Delay: 20 * time.Millisecond},
			Outage: outage, Backlog: backlog, Coordinated: coordinated, Tag: tag,
			Flags: []string{"--min-download=5mbit", "--interval=1s"},
		})
		check(err)
		var opens []string
		worst := time.Duration(0)
		for _, d := range res.OpenAfter {
			opens = append(opens, fmt.Sprintf("%.1f", d.Seconds()))
			worst = max(worst, d)
		}
		ideal := time.Duration(float64(res.Backlog) * 8 / (0.8 * uplinkBps) * float64(time.Second))
		ratio := res.Drain.Seconds() / ideal.Seconds()
		ok := res.Flaps == 0 && worst <= 10*time.Second && res.MeanBps <= 0.9*uplinkBps && ratio <= 1.3
		fmt.Fprintf(tw, "%s\t%.1f MB\t%s s\t%d\t%.1f Mbit/s\t%.1f Mbit/s (%.0f%%)\t%.1f Mbit/s (%.0f%%)\t%s\t%.2f\t%d\t%s\t\n", name, float64(res.Backlog)/1e6,
			strings.Join(opens, ", "), res.Flaps, res.Capacity/1e6, res.MeanBps/1e6, 100*res.MeanBps/uplinkBps, res.P95Bps/1e6, 100*res.P95Bps/uplinkBps,
			res.Drain.Round(100*time.Millisecond), ratio, res.Throttled, pass(ok))
	}
	tw.Flush()
}
