package validators

import (
	"time"

	"github.com/edgefault/edgefault/scenarios"
)

// NoFetchWhileClosed: the fetching workload on every node of the group
// fetched while the gate was open (otherwise there is nothing to judge)
// and completed no fetch while it was not open. A transfer that was in
// flight when the gate shut has a grace of one second to be cancelled.
type NoFetchWhileClosed struct{}

// Validate implements Validator.
func (NoFetchWhileClosed) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	const grace = time.Second
	for _, m := range ev.members(x.Group) {
		fetched := ev.events(m.Name, "workload", ev.Start, ev.End, "fetched")
		if len(fetched) == 0 && len(ev.events(m.Name, "workload", time.Time{}, ev.End)) == 0 {
			continue // no fetching workload here
		}
		whileOpen, whileShut := 0, 0
		for _, f := range fetched {
			st, ok := ev.stateAt(m.Name, "gate", f.Time, gateStates...)
			shut := ok && st.Event != "open" && f.Time.Sub(st.Time) > grace
			if !ok {
				shut = true // no gate evidence at all: nothing vouches for this fetch
			}
			// A runtime that is down (killed, restarting) is no gate at all.
			if ev.runtimeDown(m.Name, f.Time) {
				shut = true
			}
			if !shut {
				whileOpen++
				continue
			}
			whileShut++
			if whileShut <= 3 {
				v.quote(st, f)
				v.mark(m.Name, f.Time, "fetched while shut", false)
			}
		}
		v.Numbers[m.Name+".fetchedWhileOpen"] = float64(whileOpen)
		v.Numbers[m.Name+".fetchedWhileShut"] = float64(whileShut)
		switch {
		case whileShut > 0:
			v.fail("%s: %d fetches completed while the gate was not open (and %d while open)", m.Name, whileShut, whileOpen)
		case whileOpen == 0:
			v.fail("%s: the workload fetched nothing at all, so its pausing proves nothing", m.Name)
		default:
			v.ok("%s: %d fetches, all while the gate was open", m.Name, whileOpen)
		}
	}
	return v.done()
}

// runtimeDown says whether node's runtime had exited and not yet been
// started again at t.
func (ev *Evidence) runtimeDown(node string, t time.Time) bool {
	down := false
	for _, e := range ev.Events {
		if e.Time.After(t) {
			break
		}
		if e.Node == node && e.Component == "supervisor" && e.Fields["process"] == "runtime" {
			switch e.Event {
			case "exited":
				down = true
			case "started":
				down = false
			}
		}
	}
	return down
}
