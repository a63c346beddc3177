package harness

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
)

// playTrace applies the trace step st's first row to target's link now
// (ctx: this step's) and plays the rest from a goroutine that outlives the
// step (outer: the timeline's), each row a window of its own, so the
// validators judge and the report draws the link as it was each moment. A
// later step on the link, its restore, or the run's end stops it
// (stopTrace). Each row is applied under the run's link lock, as a step is.
func (r *run) playTrace(outer, ctx context.Context, target string, st scenarios.Step, idx int, act scenarios.Action) error {
	t := act.Trace
	first := r.seeded(target, r.cutKeepsOwn(target, t.Rows[0].Impairment))
	if err := r.sh.Apply(ctx, target, first); err != nil {
		return err
	}
	start := time.Now()
	r.startWindow(target, st.Group, idx, first)
	r.ev.emit(target, "timeline", "impair", "what", first.String(), "note", st.Note, "trace", act.TraceName, "row", 0)
	tctx, cancel := context.WithCancel(outer)
	done := make(chan struct{})
	r.mu.Lock()
	r.traces[target] = traceRun{cancel: cancel, done: done}
	r.mu.Unlock()
	go func() {
		defer close(done)
		var lates []time.Duration
		calls := 0
		skipped, err := t.Play(tctx, start, r.scale, st.For.D(), func(_ context.Context, i int, imp impair.Impairment, late time.Duration) error {
			if calls++; calls == 1 && i == 0 {
				return nil // the step applied it
			}
			r.shMu.Lock()
			defer r.shMu.Unlock()
			// Stopped while it waited for the lock: the link is another
			// step's now.
			if tctx.Err() != nil {
				return nil
			}
			// A cut row is the link's own profile, cut, as an outage step is.
			imp = r.seeded(target, r.cutKeepsOwn(target, imp))
			t0 := time.Now()
			// Not the step's context: it ended with the step.
			if err := r.sh.Apply(tctx, target, imp); err != nil {
				if tctx.Err() != nil {
					return nil
				}
				return err
			}
			// In force this long after its time: the timer's lateness and
			// the change itself.
			late += time.Since(t0)
			r.startWindow(target, st.Group, idx, imp)
			r.ev.emit(target, "timeline", "impair", "what", imp.String(), "note", st.Note, "trace", act.TraceName, "row", i, "lateMs", late.Milliseconds())
			lates = append(lates, late)
			return nil
		})
		if err != nil {
			r.log.Error("trace stopped: a row could not be applied", "target", target, "trace", act.TraceName, "err", err)
			r.ev.emit(target, "timeline", "trace-failed", "trace", act.TraceName, "err", err.Error())
			// The timeline fails with it, as a step that cannot be played
			// does: the link is in no known state.
			r.mu.Lock()
			if r.traceErr == nil {
				r.traceErr = fmt.Errorf("trace %s on %s: %w", act.TraceName, target, err)
			}
			r.mu.Unlock()
			return
		}
		p50, p95 := percentiles(lates)
		r.ev.emit(target, "timeline", "trace-played", "trace", act.TraceName, "rows", len(lates)+1, "skipped", skipped, "lateP50Ms", p50.Milliseconds(), "lateP95Ms", p95.Milliseconds(), "stopped", tctx.Err() != nil)
		r.log.Info(fmt.Sprintf("%s: trace %s played", target, act.TraceName), "rows", len(lates)+1, "skipped", skipped, "late p50", p50, "late p95", p95)
	}()
	return nil
}

// traceRun is a trace playing on a link.
type traceRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stopTrace stops the trace playing on target, if any. The caller holds
// the link lock (shMu), so the trace's next row cannot land after this.
func (r *run) stopTrace(target string) {
	r.mu.Lock()
	tr, ok := r.traces[target]
	delete(r.traces, target)
	r.mu.Unlock()
	if ok {
		tr.cancel()
	}
}

// stopTraces stops every trace and waits for them (the run's end).
func (r *run) stopTraces() {
	r.mu.Lock()
	trs := r.traces
	r.traces = map[string]traceRun{}
	r.mu.Unlock()
	for _, tr := range trs {
		tr.cancel()
		<-tr.done
	}
}

func percentiles(ds []time.Duration) (p50, p95 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*95/100)]
}
