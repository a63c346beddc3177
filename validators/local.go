package validators

import (
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/units"
)

// LocalServiceAnswers: the local service on every node of the group (the
// store's point of sale) answered at least minShare (default 99%) of the
// customers' calls, and at least one call during each outage of its link
// (otherwise the outage proved nothing). Calls are made by the harness
// from the site's LAN, never through the uplink.
type LocalServiceAnswers struct{}

// Validate implements Validator.
func (LocalServiceAnswers) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	share := 99.0
	if x.MinShare != "" {
		share, _ = units.Percent("minShare", x.MinShare)
	}
	for _, m := range ev.members(x.Group) {
		if m.Role != "node" {
			continue // local services run on nodes
		}
		calls := ev.events(m.Name, "customer", ev.Start, ev.End, "paid", "refused")
		if len(calls) == 0 {
			v.fail("%s: no customer calls recorded (is a serve workload on it?)", m.Name)
			continue
		}
		paid := 0
		for _, c := range calls {
			if c.Event == "paid" {
				paid++
			} else if len(v.Evidence) < 6 {
				v.quote(c)
				v.mark(m.Name, c.Time, "payment refused", false)
			}
		}
		got := 100 * float64(paid) / float64(len(calls))
		v.Numbers[m.Name+".calls"] = float64(len(calls))
		v.Numbers[m.Name+".answeredPercent"] = got
		duringOutage, answeredOutage, silent := 0, 0, 0
		for _, w := range ev.degraded(m, nil) {
			answered := 0
			for _, c := range calls {
				if c.Time.After(w.Start) && c.Time.Before(w.End) {
					duringOutage++
					if c.Event == "paid" {
						answered++
					}
				}
			}
			answeredOutage += answered
			if answered == 0 {
				silent++
				v.mark(m.Name, w.Start, "no payment answered in this outage", false)
			}
		}
		v.Numbers[m.Name+".callsDuringOutage"] = float64(duringOutage)
		switch {
		case got < share:
			v.fail("%s: answered %d of %d calls (%.1f%%, want >= %.1f%%)", m.Name, paid, len(calls), got, share)
		case silent > 0:
			v.fail("%s: no call answered during %d of its outages (%d calls made in all of them)", m.Name, silent, duringOutage)
		default:
			v.ok("%s: answered %d of %d calls (%.1f%%), %d of %d during outages", m.Name, paid, len(calls), got, answeredOutage, duringOutage)
		}
	}
	return v.done()
}
