package validators

import (
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// RoutesSwitched: every node of the group whose gateway lost its uplink
// switched to an alternate gateway within `within` (default 15 s) and
// back to its own within `within` plus the hold-down after the restore;
// a node whose gateway kept its uplink never left it.
type RoutesSwitched struct{}

var failoverStates = []string{"primary", "alternate", "degraded"}

// Validate implements Validator.
func (RoutesSwitched) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	bound := within(x, 15*time.Second)
	for _, m := range ev.members(x.Group) {
		if m.Role != "node" {
			continue
		}
		changes := ev.events(m.Name, "failover", ev.Start, ev.End, failoverStates...)
		// Failover answers the gateway's uplink; a node's own cable cut
		// is not something another gateway can fix.
		ws := ev.merged(nil, m.Gateway)
		if len(ev.events(m.Name, "failover", time.Time{}, ev.End)) == 0 {
			v.fail("%s: no failover events at all: failover is off on this node (runtime.failover.enabled)", m.Name)
			continue
		}
		if len(ws) == 0 {
			var left []wire.Event
			for _, e := range changes {
				if e.Event != "primary" {
					left = append(left, e)
				}
			}
			if len(left) > 0 {
				v.fail("%s: left its gateway (%s at %s) though its uplink was fine", m.Name, left[0].Event, ev.rel(left[0].Time))
				v.quote(left[0])
			} else {
				v.ok("%s: uplink fine, stayed on its own gateway", m.Name)
			}
			continue
		}
		for _, w := range ws {
			sw, back := firstAfter(changes, w.Start, "alternate"), firstAfter(changes, w.End, "primary")
			switch {
			case sw == nil || sw.Time.After(w.End):
				v.fail("%s: did not switch gateways during %s (%s-%s)", m.Name, w.What, ev.rel(w.Start), ev.rel(w.End))
				v.mark(m.Name, w.Start, "no switch", false)
				continue
			case sw.Time.Sub(w.Start) > bound:
				v.fail("%s: switched %.1f s after the cut (bound %v)", m.Name, secs(sw.Time.Sub(w.Start)), bound)
			}
			v.quote(*sw)
			v.mark(m.Name, sw.Time, "switched gateway", sw.Time.Sub(w.Start) <= bound)
			v.Numbers[m.Name+".switchSeconds"] = secs(sw.Time.Sub(w.Start))
			backBound := bound + ev.HoldDown
			switch {
			case back == nil:
				v.fail("%s: never failed back to its own gateway after the restore", m.Name)
			case back.Time.Sub(w.End) > backBound:
				v.fail("%s: failed back %.1f s after the restore (bound %v: %v plus the %v hold-down)", m.Name, secs(back.Time.Sub(w.End)), backBound, bound, ev.HoldDown)
			default:
				v.quote(*back)
				v.mark(m.Name, back.Time, "failed back", true)
				v.Numbers[m.Name+".failBackSeconds"] = secs(back.Time.Sub(w.End))
				v.ok("%s: switched %.1f s after the cut, failed back %.1f s after the restore (hold-down %v)", m.Name, secs(sw.Time.Sub(w.Start)), secs(back.Time.Sub(w.End)), ev.HoldDown)
			}
		}
	}
	return v.done()
}

func firstAfter(es []wire.Event, t time.Time, name string) *wire.Event {
	for i := range es {
		if es[i].Event == name && !es[i].Time.Before(t) {
			return &es[i]
		}
	}
	return nil
}
