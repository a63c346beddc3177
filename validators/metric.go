package validators

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// Metric: a bound on a Prometheus series an app exposes (its workload's
// port, path /metrics unless http says otherwise), scraped by the harness
// from the node itself twice a second, held by every sample of every
// series it selects in the phase asked: always (the default), before
// (the node's first outage), during (its outages) or after (its last
// restore plus within, default 0: the bound must hold from then to the
// end, e.g. a queue that must have drained). A metric the app never
// exposes fails, naming what it does expose.
type Metric struct{}

// Scrape evidence, written by the harness (component "scrape"): a
// sample of a series a bound selects, a scrape where none was, or a
// scrape that failed.
const (
	ScrapeComponent = "scrape"
	ScrapeSample    = "sample"
	ScrapeAbsent    = "absent"
	ScrapeFailed    = "failed"
)

// Validate implements Validator.
func (Metric) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	b, err := ParseMetricBound(x.Metric)
	if err != nil {
		v.fail("%v", err)
		return v.done()
	}
	phase := x.Phase
	if phase == "" {
		phase = "always"
	}
	for _, m := range ev.appMembers(x.Group, x.Workload) {
		wins := ev.degraded(m, nil)
		in, why := phaseOf(phase, wins, x.Within.D())
		if in == nil {
			v.fail("%s: %s", m.Name, why)
			continue
		}
		var samples, bad int
		var absent, failed *wire.Event
		lo, hi := 0.0, 0.0
		for _, e := range ev.events(m.Name, ScrapeComponent, ev.Start, ev.End) {
			if e.Fields["workload"] != x.Workload || e.Fields["bound"] != x.Metric || !in(e.Time) {
				continue
			}
			switch e.Event {
			case ScrapeAbsent:
				absent = &e
				continue
			case ScrapeFailed:
				failed = &e
				continue
			}
			val, ok := num(e.Fields["value"])
			if !ok {
				continue
			}
			if samples == 0 || val < lo {
				lo = val
			}
			if samples == 0 || val > hi {
				hi = val
			}
			samples++
			if !b.Holds(val) {
				bad++
				if bad <= 3 {
					v.quote(e)
				}
				if bad == 1 {
					v.mark(m.Name, e.Time, fmt.Sprintf("%s = %g", b.Name, val), false)
				}
			}
		}
		v.Numbers[m.Name+".samples"] = float64(samples)
		v.Numbers[m.Name+".violations"] = float64(bad)
		switch {
		case samples == 0 && absent != nil:
			v.quote(*absent)
			v.fail("%s: %s does not expose %s%s (it exposes: %v)", m.Name, x.Workload, b.Name, matcherWords(b), absent.Fields["exposes"])
		case samples == 0 && failed != nil:
			v.quote(*failed)
			v.fail("%s: no sample of %s %s: scraping %s failed (%v)", m.Name, b.Name, phase, x.Workload, failed.Fields["err"])
		case samples == 0:
			v.fail("%s: no sample of %s %s", m.Name, b.Name, phase)
		case bad > 0:
			v.fail("%s: %s broke %q in %d of %d samples %s (seen %g to %g)", m.Name, x.Workload, x.Metric, bad, samples, phase, lo, hi)
		default:
			v.ok("%s: %s held in %d samples %s (seen %g to %g)", m.Name, strings.TrimSpace(x.Metric), samples, phase, lo, hi)
		}
	}
	return v.done()
}

func matcherWords(b MetricBound) string {
	if len(b.Matchers) == 0 {
		return ""
	}
	var ps []string
	for _, m := range b.Matchers {
		op := "="
		if m.Not {
			op = "!="
		}
		ps = append(ps, fmt.Sprintf("%s%s%q", m.Label, op, m.Value))
	}
	return "{" + strings.Join(ps, ",") + "}"
}

// phaseOf says which instants phase covers, given the node's outages;
// nil and why when there is nothing to judge.
func phaseOf(phase string, wins []Window, within time.Duration) (func(time.Time) bool, string) {
	switch phase {
	case "always":
		return func(time.Time) bool { return true }, ""
	case "before":
		if len(wins) == 0 {
			return func(time.Time) bool { return true }, ""
		}
		first := wins[0].Start
		return func(t time.Time) bool { return t.Before(first) }, ""
	case "during":
		if len(wins) == 0 {
			return nil, "no outage of its link to judge the phase 'during' by"
		}
		return func(t time.Time) bool {
			for _, w := range wins {
				if !t.Before(w.Start) && t.Before(w.End) {
					return true
				}
			}
			return false
		}, ""
	case "after":
		if len(wins) == 0 {
			return nil, "no outage of its link to judge the phase 'after' by"
		}
		last := wins[0].End
		for _, w := range wins {
			if w.End.After(last) {
				last = w.End
			}
		}
		from := last.Add(within)
		return func(t time.Time) bool { return !t.Before(from) }, ""
	}
	return nil, fmt.Sprintf("unknown phase %q", phase)
}

func checkMetric(sc *scenarios.Scenario, x scenarios.Expectation, at string) error {
	if err := checkAppWorkload(sc, x, at); err != nil {
		return err
	}
	if x.Metric == "" {
		return sc.Errorf(at+".metric", `validator metric needs a metric bound, e.g. metric: 'app_queue_depth <= 100'`)
	}
	if _, err := ParseMetricBound(x.Metric); err != nil {
		return sc.Errorf(at+".metric", "%v", err)
	}
	switch x.Phase {
	case "", "always", "before", "during", "after":
	default:
		return sc.Errorf(at+".phase", "phase %q: use always, before (the first outage), during (outages) or after (the last restore, plus within)", x.Phase)
	}
	if x.Within != 0 && x.Phase != "after" {
		return sc.Errorf(at+".within", "within bounds the time after the last restore: give it with phase: after")
	}
	if x.HTTP != "" && x.HTTP[0] != '/' {
		return sc.Errorf(at+".http", "http %q: give the metrics path such as /metrics", x.HTTP)
	}
	return nil
}
