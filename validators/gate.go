package validators

import (
	"time"

	"github.com/edgefault/edgefault/scenarios"
)

// GateFollowsLink: on every node of the group, the speed gate leaves open
// within `within` (default 15 s) of the link degrading below the gate's
// thresholds (or being cut), stays shut while it is, and opens again
// within a minute of the restore (a full speed test may confirm first).
// A node whose link was never degraded must keep its gate open.
type GateFollowsLink struct{}

// ReopenBound is how long after a restore the gate may take to open.
const ReopenBound = time.Minute

var gateStates = []string{"open", "closed", "unknown"}

// Validate implements Validator.
func (GateFollowsLink) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	bound := within(x, 15*time.Second)
	for _, m := range ev.members(x.Group) {
		if m.Role != "node" {
			continue
		}
		changes := ev.events(m.Name, "gate", ev.Start, ev.End, gateStates...)
		ws := ev.degraded(m, ev.gateDegrades)
		if len(ws) == 0 && len(ev.degraded(m, func(Window) bool { return true })) > 0 {
			// Impaired, but not below the thresholds as the scenario
			// wrote them (loss, jitter, a rate near the threshold): the
			// gate may go either way.
			v.ok("%s: link impaired but not below the gate's thresholds; no requirement", m.Name)
			continue
		}
		if len(ws) == 0 {
			if st, ok := ev.stateAt(m.Name, "gate", ev.Start, gateStates...); !ok || st.Event != "open" {
				v.fail("%s: the gate was not seen open when the timeline started", m.Name)
				continue
			}
			bad := false
			for _, e := range changes {
				if e.Event != "open" {
					v.fail("%s: gate %s at %s on an undisturbed link", m.Name, e.Event, ev.rel(e.Time))
					v.quote(e)
					v.mark(m.Name, e.Time, "gate "+e.Event, false)
					bad = true
					break
				}
			}
			if !bad {
				v.ok("%s: link undisturbed, gate open throughout", m.Name)
			}
			continue
		}
		for _, w := range ws {
			// Leaving open: already shut at the start, or a change within the bound.
			var left time.Time
			if e, ok := ev.stateAt(m.Name, "gate", w.Start, gateStates...); ok && e.Event != "open" {
				left = w.Start
			}
			if left.IsZero() {
				for _, e := range changes {
					if e.Time.After(w.Start) && e.Event != "open" {
						left = e.Time
						v.quote(e)
						break
					}
				}
			}
			switch {
			case left.IsZero() || left.After(w.End):
				v.fail("%s: gate never shut during %s (%s-%s)", m.Name, w.What, ev.rel(w.Start), ev.rel(w.End))
				v.mark(m.Name, w.Start, "gate stayed open", false)
				continue
			case left.Sub(w.Start) > bound:
				v.fail("%s: gate shut %.1f s after %s began (bound %v)", m.Name, secs(left.Sub(w.Start)), w.What, bound)
				v.mark(m.Name, left, "gate shut late", false)
			default:
				v.Numbers[m.Name+".closeSeconds"] = secs(left.Sub(w.Start))
				v.mark(m.Name, left, "gate shut", true)
			}
			for _, e := range changes {
				if e.Event == "open" && e.Time.After(left) && e.Time.Before(w.End) {
					v.fail("%s: gate opened at %s while the link was still degraded (%s)", m.Name, ev.rel(e.Time), w.What)
					v.quote(e)
					v.mark(m.Name, e.Time, "opened while degraded", false)
					break
				}
			}
			var reopened time.Time
			for _, e := range changes {
				if e.Event == "open" && !e.Time.Before(w.End) {
					reopened = e.Time
					v.quote(e)
					break
				}
			}
			switch {
			case reopened.IsZero():
				v.fail("%s: gate not open again by the end of the run (%s after the restore)", m.Name, ev.rel(ev.End))
				v.mark(m.Name, w.End, "never reopened", false)
			case reopened.Sub(w.End) > ReopenBound:
				v.fail("%s: gate reopened %.1f s after the restore (bound %v)", m.Name, secs(reopened.Sub(w.End)), ReopenBound)
				v.mark(m.Name, reopened, "reopened late", false)
			default:
				v.Numbers[m.Name+".reopenSeconds"] = secs(reopened.Sub(w.End))
				v.mark(m.Name, reopened, "gate reopened", true)
				v.ok("%s: shut %.1f s after %s began (bound %v), reopened %.1f s after the restore", m.Name, secs(left.Sub(w.Start)), w.What, bound, secs(reopened.Sub(w.End)))
			}
		}
	}
	return v.done()
}
