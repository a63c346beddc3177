package validators

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// NodeTagged: in the site's Kubernetes API, every member of the group
// whose uplink was lost had its Node labelled edgefault.io/uplink=down
// (and tainted and cordoned, when the scenario's failover actions say so)
// within `within` (default 15 s), and all of it removed within `within`
// plus the hold-down after the restore. A member whose uplink was fine
// was never tagged. The harness watches the Node objects and records
// every change as a "kube" event.
type NodeTagged struct{}

// Validate implements Validator.
func (NodeTagged) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	bound := within(x, 15*time.Second)
	acts := map[string]bool{}
	for _, a := range ev.Scenario.Spec.Runtime.Failover.Actions {
		acts[a] = true
	}
	mark := func(e wire.Event) wire.NodeMark {
		var m wire.NodeMark
		_ = e.Decode(&m) // a mark that does not decode reads as untagged
		return m
	}
	tagged := func(e wire.Event) bool {
		m := mark(e)
		return m.Uplink == "down" && (!acts["taint"] || m.Tainted) && (!acts["cordon"] && !acts["drain"] || m.Unschedulable)
	}
	clean := func(e wire.Event) bool {
		m := mark(e)
		return m.Uplink != "down" && !m.Tainted && !m.Unschedulable
	}
	for _, m := range ev.members(x.Group) {
		obs := ev.events(m.Name, "kube", time.Time{}, ev.End, "node")
		if len(obs) == 0 {
			v.fail("%s: the harness saw no Node object for it (is the site's control plane up?)", m.Name)
			continue
		}
		// Only a gateway's own uplink gets its Node tagged (by its own
		// runtime); a node behind it fails over and must stay untagged.
		var ws []Window
		if m.Role == "gateway" {
			ws = ev.merged(nil, m.Name)
		}
		if len(ws) == 0 {
			clean := true
			for _, e := range obs {
				if mark(e).Uplink == "down" {
					v.fail("%s: tagged down at %s though its own uplink was fine", m.Name, ev.rel(e.Time))
					v.quote(e)
					clean = false
					break
				}
			}
			if clean {
				v.ok("%s: own uplink fine, never tagged", m.Name)
			}
			continue
		}
		for _, w := range ws {
			var on, off *wire.Event
			for i := range obs {
				e := &obs[i]
				if on == nil && !e.Time.Before(w.Start) && tagged(*e) {
					on = e
				}
				if on != nil && off == nil && !e.Time.Before(w.End) && clean(*e) {
					off = e
				}
			}
			want := "labelled uplink=down"
			if acts["taint"] {
				want += ", tainted"
			}
			if acts["cordon"] || acts["drain"] {
				want += ", cordoned"
			}
			switch {
			case on == nil || on.Time.After(w.End):
				v.fail("%s: never %s during %s (%s-%s); actions: %v", m.Name, want, w.What, ev.rel(w.Start), ev.rel(w.End), ev.Scenario.Spec.Runtime.Failover.Actions)
				v.mark(m.Name, w.Start, "not tagged", false)
				continue
			case on.Time.Sub(w.Start) > bound:
				v.fail("%s: %s %.1f s after the cut (bound %v)", m.Name, want, secs(on.Time.Sub(w.Start)), bound)
			}
			v.quote(*on)
			v.mark(m.Name, on.Time, "tagged", true)
			v.Numbers[m.Name+".tagSeconds"] = secs(on.Time.Sub(w.Start))
			backBound := bound + ev.HoldDown
			switch {
			case off == nil:
				v.fail("%s: still tagged at the end of the run (%s)", m.Name, fmt.Sprint(obs[len(obs)-1].Fields))
			case off.Time.Sub(w.End) > backBound:
				v.fail("%s: untagged %.1f s after the restore (bound %v)", m.Name, secs(off.Time.Sub(w.End)), backBound)
			default:
				v.quote(*off)
				v.mark(m.Name, off.Time, "untagged", true)
				v.Numbers[m.Name+".untagSeconds"] = secs(off.Time.Sub(w.End))
				v.ok("%s: %s %.1f s after the cut, all removed %.1f s after the restore", m.Name, want, secs(on.Time.Sub(w.Start)), secs(off.Time.Sub(w.End)))
			}
		}
	}
	return v.done()
}
