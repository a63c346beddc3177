package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/units"
	"github.com/edgefault/edgefault/validators"
)

// regional: the built-in regional-outage (a hundred stores without control
// planes; sixty lose their ISP for half an hour and return together), as
// shipped (the sink admits at its ingest rate, forwarders back off with
// jitter) and against a naive baseline in the same run: a sink without
// admission and forwarders that retry in step.
func (b *bench) regional() {
	src, err := scenarios.BuiltinSource("regional-outage")
	check(err)
	stores := "100 stores, 60 cut"
	if b.quick {
		src = []byte(strings.NewReplacer("count: 40", "count: 4", "count: 20", "count: 2", "confirmSpread: 6s", "confirmSpread: 500ms").Replace(string(src)))
		stores = "10 stores, 6 cut (-quick)"
	}
	fmt.Printf("== Regional reconnect: regional-outage (%s for 30 min, returning together; time scale 20)\n", stores)
	fmt.Println("   targets: fleet up <= 30 s; <= 8 GiB in all; no acknowledged record lost or doubled; the sink within its ingest limit;")
	fmt.Println("   the backlog (the cut stores') drained within 1.2 x backlog / the sink's ingest rate (its capacity), from the first returning")
	fmt.Println("   store's flush (gates reopening is gate-follows-link's to judge); judged beside")
	fmt.Println("   the live traffic that shares the sink meanwhile (no drain is quicker than backlog / (capacity - live)), both shown")
	eg := edgeguardBin()
	dir, err := os.MkdirTemp("/run", "edgefault-bench-regional-")
	check(err)
	kept := false
	defer func() {
		if kept {
			fmt.Printf("   the runs' evidence and reports are kept in %s (a row failed)\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithLogger(discard()), netns.WithHelper(eg))
	check(err)
	tw := table("run\tfleet up\tprocesses\tRSS (shared binary in each)\tanonymous\tPSS\tlost\tsink peak (2 s)\t429s\tflush failures\tbacklog\tdrain\tdrain/ideal\tbeside live\tsink busy\tverdicts\tmeets target\t")
	for _, naive := range []bool{true, false} {
		sc, err := scenarios.ParseScenario("regional-outage", src)
		check(err)
		capacity, err := units.ParseRate(sc.Spec.Runtime.Sink.IngestRate)
		check(err)
		name := "as shipped (admission, jitter)"
		if naive {
			name = "naive (no admission, no jitter)"
			sc.Spec.Runtime.Sink = scenarios.SinkSpec{}
			sc.Spec.Runtime.Buffer.NoJitter = true
		}
		reports := filepath.Join(dir, "reports-shipped")
		if naive {
			reports = filepath.Join(dir, "reports-naive")
		}
		res := harness.Run(context.Background(), sc, harness.RunOptions{Provider: p, Edgeguard: eg, Reports: reports, FleetPrefix: "br-", Log: discard()})
		if res.Error != "" {
			kept = true
			check(fmt.Errorf("regional-outage (%s): %s", name, res.Error))
		}
		var sink, delivery validators.Verdict
		failed := []string{}
		defer func() {
			// What failed, said after the table.
			for _, v := range res.Verdicts {
				for _, l := range v.Lines {
					if strings.HasPrefix(l, "FAIL") {
						fmt.Printf("   %s, %s: %s\n", name, v.Validator, l)
						break
					}
				}
			}
		}()
		for _, v := range res.Verdicts {
			switch v.Validator {
			case "sink-within-limit":
				sink = v
			case "delivered-exactly-once":
				delivery = v
			}
			if !v.Pass {
				failed = append(failed, v.Validator)
			}
		}
		lost := 0.0
		for k, n := range delivery.Numbers {
			if strings.HasSuffix(k, ".lost") {
				lost += n
			}
		}
		failures, _ := countEvents(res.Evidence, "-runtime.jsonl", "flush-failed")
		ideal := sink.Numbers["backlogBytes"] * 8 / float64(capacity)
		ratio := sink.Numbers["drainSeconds"] / max(ideal, 1e-3)
		beside, measured := sink.Numbers["drainRatioBesideLive"]
		besideCol := "-" // an unbounded sink has no capacity to leave
		if measured {
			besideCol = fmt.Sprintf("%.2f", beside)
		}
		verdicts := "all pass"
		if len(failed) > 0 {
			verdicts = "FAIL " + strings.Join(failed, ", ")
		}
		m := res.Memory
		if m == nil {
			m = &clusters.Memory{}
		}
		ok := !naive && res.FleetUp <= 30*time.Second && m.PSS <= 8<<30 && lost == 0 && len(failed) == 0 && measured && beside <= 1.2
		kept = kept || (!naive && !ok)
		busy := "-"
		if v, ok := sink.Numbers["drainSinkBusy"]; ok {
			busy = fmt.Sprintf("%.0f%%", 100*v)
		}
		fmt.Fprintf(tw, "%s\t%.1f s\t%d\t%.1f GiB\t%.1f GiB\t%.1f GiB\t%.0f\t%.1f Mbit/s\t%.0f\t%d\t%.1f MB\t%.1f s\t%.2f\t%s\t%s\t%s\t%s\t\n", name,
			res.FleetUp.Seconds(), m.Processes, gib(m.RSS), gib(m.Anon), gib(m.PSS), lost, sink.Numbers["peakBps"]/1e6, sink.Numbers["refused"], failures,
			sink.Numbers["backlogBytes"]/1e6, sink.Numbers["drainSeconds"], ratio, besideCol, busy, verdicts, pass(ok))
	}
	tw.Flush()
	fmt.Println("   the sink's capacity is the scenario's ingest rate (24 Mbit/s) in both rows; 8 GiB is checked by PSS: RSS counts the")
	fmt.Println("   pages of the one edgeguard binary every runtime and workload maps once per process")
}

func gib(b uint64) float64 { return float64(b) / (1 << 30) }

// countEvents counts the events called event in the evidence files whose
// names end in suffix.
func countEvents(dir, suffix, event string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		return 0, err
	}
	needle := []byte(`"event":"` + event + `"`)
	n := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return n, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), needle) {
				n++
			}
		}
		fh.Close()
	}
	return n, nil
}
