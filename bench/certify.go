package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edgefault/edgefault/harness"
)

// certify times what make run does (edgefault certify: the three
// built-ins, cached control-plane binaries) against its baseline, the sum
// of the scenarios' scaled timelines: the ratio is the overhead the
// harness adds (fleet and control planes up, runtime ready, settle,
// judging, fleet down). Target: the whole run within 5 minutes.
func (b *bench) certify() {
	fmt.Println("make run (edgefault certify, the built-in scenarios) against the sum of their scaled timelines")
	bin, err := filepath.Abs("bin/edgefault")
	check(err)
	if _, err := os.Stat(bin); err != nil {
		check(fmt.Errorf("%s: run make build first (make bench does)", bin))
	}
	dir, err := os.MkdirTemp("", "edgefault-bench-certify-")
	check(err)
	defer os.RemoveAll(dir)
	cmd := exec.Command(bin, "certify", "--reports", dir)
	log, err := os.Create(filepath.Join(dir, "certify.log"))
	check(err)
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	runErr := cmd.Run()
	wall := time.Since(start)
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		out, _ := os.ReadFile(log.Name())
		check(fmt.Errorf("certify wrote no report (%v, run error %v):\n%s", err, runErr, out))
	}
	var rep harness.Report
	check(json.Unmarshal(raw, &rep))
	tw := table("scenario\ttime scale\tscaled timeline\twall time\toverhead\tverdict\t")
	var sum time.Duration
	for _, s := range rep.Scenarios {
		sum += s.Timeline
		v := "pass"
		if !s.Pass {
			v = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%g\t%.1f s\t%.1f s\t%.2fx\t%s\t\n", s.Name, s.TimeScale, s.Timeline.Seconds(), s.Duration.Seconds(), s.Duration.Seconds()/s.Timeline.Seconds(), v)
	}
	ok := "within"
	if wall > 5*time.Minute {
		ok = "OVER"
	}
	v := "pass"
	if !rep.Pass {
		v = "FAIL"
	}
	fmt.Fprintf(tw, "certify (whole process)\t\t%.1f s\t%.1f s\t%.2fx\t%s\t\n", sum.Seconds(), wall.Seconds(), wall.Seconds()/sum.Seconds(), v)
	tw.Flush()
	fmt.Printf("target: make run within 5 min: %.1f min, %s it (baseline: the scaled timelines alone, %.1f min)\n", wall.Minutes(), ok, sum.Minutes())
}
