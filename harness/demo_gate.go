package harness

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/shaper/impair"
)

// gateStep is the talk's demo done with the runtime: edgeguard serve on
// the store's POS node gates the sample workload; throttling the node
// closes the gate and pauses the workload, restoring it reopens the gate
// and the workload resumes. Bounds are generous (3x the 5 s detection
// target); make bench holds the target itself.
func gateStep(ctx context.Context, log *slog.Logger, f clusters.Fleet, sh clusters.LinkShaper, node string, throttle impair.Impairment, edgeguard string) (st Step) {
	const threshold = "20mbit"
	st = Step{Name: "speed gate", Target: node + " link", Impairment: throttle.String(),
		Expect: "gate open on the 50mbit uplink; closed <= 15 s after the throttle, workload paused; reopened after the restore, workload fetching again"}
	fail := func(format string, a ...any) Step {
		st.Detail = fmt.Sprintf(format, a...)
		return st
	}
	if edgeguard == "" {
		var err error
		if edgeguard, err = FindEdgeguard(); err != nil {
			return fail("%v", err)
		}
	}
	log.Info("starting the cloud's speed-test and content servers and a speed gate", "node", node, "threshold", threshold)
	cloud, err := StartCloud(ctx, f, edgeguard)
	if err != nil {
		return fail("%v", err)
	}
	defer cloud.Stop()
	g, err := StartGate(ctx, f, edgeguard, node, cloud, "--min-download="+threshold, "--full-duration=3s", "--interval=1s")
	if err != nil {
		return fail("%v", err)
	}
	defer g.Stop()
	if _, err := g.WaitState(ctx, wire.Open, 60*time.Second); err != nil {
		return fail("%v", err)
	}
	paths, err := f.Paths(node)
	if err != nil {
		return fail("%v", err)
	}
	wl := path.Join(paths.Evidence, node+"-workload.jsonl")
	w, err := f.StartCommand(ctx, node, clusters.Command{Name: "workload", Argv: []string{edgeguard, "workload", "fetch", "--node=" + node, "--gate=" + g.URL(), "--content=" + cloud.ContentURL, "--period=1s", "--events=" + wl}})
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = w.Stop(2 * time.Second) }()
	// The workload's events are read where the provider collects them.
	collected, err := os.MkdirTemp("", "edgefault-demo-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(collected)
	count := func(event string, after time.Time) int {
		if err := f.Collect(ctx, collected); err != nil {
			log.Warn("could not collect the workload's evidence", "err", err)
		}
		evs, _ := events.Read(filepath.Join(collected, "evidence", node+"-workload.jsonl"))
		n := 0
		for _, e := range evs {
			if e.Event == event && e.Time.After(after) {
				n++
			}
		}
		return n
	}
	time.Sleep(3 * time.Second)
	if n := count("fetched", time.Time{}); n == 0 {
		return fail("the workload fetched nothing while the gate was open")
	}

	if err := sh.Apply(ctx, node, throttle); err != nil {
		return fail("%v", err)
	}
	dropped := time.Now()
	s, err := g.WaitState(ctx, wire.Closed, 15*time.Second)
	if err != nil {
		_ = sh.Clear(ctx, node)
		return fail("%v", err)
	}
	closedIn := s.Since.Sub(dropped)
	log.Info("gate closed", "after", closedIn.Round(time.Millisecond), "reason", s.Reason)
	time.Sleep(3 * time.Second)
	fetchedWhileClosed := count("fetched", s.Since.Add(time.Second))
	paused := count("paused", dropped)
	if err := sh.Clear(ctx, node); err != nil {
		return fail("%v", err)
	}
	restored := time.Now()
	s, err = g.WaitState(ctx, wire.Open, 60*time.Second)
	if err != nil {
		return fail("%v", err)
	}
	reopenedIn := s.Since.Sub(restored)
	time.Sleep(2500 * time.Millisecond)
	resumed := count("fetched", s.Since)
	st.Detail = fmt.Sprintf("closed %.1f s after the throttle; %d fetches while closed; reopened %.1f s after the restore (a 3 s full test confirms before opening); %d fetches since",
		closedIn.Seconds(), fetchedWhileClosed, reopenedIn.Seconds(), resumed)
	st.Pass = closedIn <= 15*time.Second && paused >= 1 && fetchedWhileClosed == 0 && resumed >= 1
	return st
}
