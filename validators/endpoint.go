package validators

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/units"
)

// EndpointAnswers: an app's endpoint (a command workload's port, HTTP
// path or TCP) kept answering the harness's probes, made from `from`
// (the site's LAN by default, or the node itself) four times a second:
// at least minShare (default 99%) of them, within maxLatency if given,
// over the whole run and within each outage of the node's link, with at
// least one probe in each (the "keeps serving locally while offline"
// promise). Probes never cross the uplink.
type EndpointAnswers struct{}

// Probe evidence, written by the harness (component "probe").
const (
	ProbeComponent = "probe"
	ProbeAnswered  = "answered"
	ProbeFailed    = "failed"
)

// ProbeVia names how an expectation probes (its vantage and what it
// asks): each expectation judges its own probes only.
func ProbeVia(x scenarios.Expectation) string {
	from := x.From
	if from == "" {
		from = "lan"
	}
	if x.HTTP == "" {
		return from + " tcp"
	}
	return from + " GET " + x.HTTP
}

// Validate implements Validator.
func (EndpointAnswers) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	share := 99.0
	if x.MinShare != "" {
		share, _ = units.Percent("minShare", x.MinShare)
	}
	for _, m := range ev.appMembers(x.Group, x.Workload) {
		var probes []probe
		for _, e := range ev.events(m.Name, ProbeComponent, ev.Start, ev.End, ProbeAnswered, ProbeFailed) {
			if e.Fields["workload"] != x.Workload || e.Fields["via"] != ProbeVia(x) {
				continue
			}
			ok := e.Event == ProbeAnswered
			ms, _ := num(e.Fields["ms"])
			if ok && x.MaxLatency != 0 && time.Duration(ms*float64(time.Millisecond)) > x.MaxLatency.D() {
				ok = false
			}
			probes = append(probes, probe{at: e.Time, ok: ok, i: len(probes)})
			if !ok && len(v.Evidence) < 4 {
				v.quote(e)
			}
		}
		if len(probes) == 0 {
			v.fail("%s: no probe of %s recorded (does it listen on its port?)", m.Name, x.Workload)
			continue
		}
		answered, total := count(probes, time.Time{}, time.Time{})
		got := 100 * float64(answered) / float64(total)
		v.Numbers[m.Name+".probes"] = float64(total)
		v.Numbers[m.Name+".answeredPercent"] = got
		failed := false
		if got < share {
			v.fail("%s: %s answered %d of %d probes (%.1f%%, want >= %.1f%%%s)", m.Name, x.Workload, answered, total, got, share, latencyWords(x))
			failed = true
		}
		var during []string
		for _, w := range ev.degraded(m, nil) {
			a, t := count(probes, w.Start, w.End)
			switch {
			case t == 0:
				v.fail("%s: no probe during the outage at %s (%s): it proved nothing", m.Name, ev.at(w.Start), w.What)
				failed = true
			case 100*float64(a)/float64(t) < share:
				v.fail("%s: %s answered %d of %d probes during the outage at %s (%.1f%%, want >= %.1f%%)", m.Name, x.Workload, a, t, ev.at(w.Start), 100*float64(a)/float64(t), share)
				v.mark(m.Name, w.Start, x.Workload+" stopped answering offline", false)
				failed = true
			default:
				during = append(during, fmt.Sprintf("%d/%d", a, t))
			}
		}
		if !failed {
			offline := ""
			if len(during) > 0 {
				offline = ", during its outages " + strings.Join(during, ", ")
			}
			v.ok("%s: %s answered %d of %d probes (%.1f%%)%s", m.Name, x.Workload, answered, total, got, offline)
		}
	}
	return v.done()
}

type probe struct {
	at time.Time
	ok bool
	i  int
}

// count is how many of the probes in [from, to) answered, of how many
// (zero to: to the end).
func count(ps []probe, from, to time.Time) (answered, total int) {
	for _, p := range ps {
		if p.at.Before(from) || (!to.IsZero() && !p.at.Before(to)) {
			continue
		}
		total++
		if p.ok {
			answered++
		}
	}
	return
}

func latencyWords(x scenarios.Expectation) string {
	if x.MaxLatency == 0 {
		return ""
	}
	return ", each within " + x.MaxLatency.D().String()
}

// appMembers are the nodes of group that run workload.
func (ev *Evidence) appMembers(group, workload string) []scenarios.Member {
	var on []scenarios.Member
	for _, w := range ev.Scenario.Spec.Workloads {
		if w.Name == workload {
			on, _ = ev.Scenario.Spec.Resolve(w.On)
		}
	}
	var out []scenarios.Member
	for _, m := range ev.members(group) {
		if m.Role == "node" && slices.ContainsFunc(on, func(o scenarios.Member) bool { return o.Name == m.Name }) {
			out = append(out, m)
		}
	}
	return out
}

// at says when t was, in the run's time.
func (ev *Evidence) at(t time.Time) string {
	return "+" + t.Sub(ev.Start).Round(100*time.Millisecond).String()
}

// num reads a number field of an event (float64 from JSON, or a number
// an app wrote).
func num(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// checkAppWorkload checks that x names a command workload with a port
// that runs on nodes.
func checkAppWorkload(sc *scenarios.Scenario, x scenarios.Expectation, at string) error {
	if x.Workload == "" {
		return sc.Errorf(at+".workload", "validator %s needs a workload: the name of a command workload with a port", x.Validator)
	}
	for _, w := range sc.Spec.Workloads {
		if w.Name != x.Workload {
			continue
		}
		switch {
		case w.Type != scenarios.WorkloadCommand:
			return sc.Errorf(at+".workload", "workload %s is of type %s: validator %s judges command workloads (your app)", w.Name, w.Type, x.Validator)
		case w.OnCloud():
			return sc.Errorf(at+".workload", "workload %s runs in the cloud: validator %s judges an app on the group's nodes", w.Name, x.Validator)
		case w.Port == 0:
			return sc.Errorf(at+".workload", "workload %s has no port: give it the port it listens on (port: 8000)", w.Name)
		}
		return nil
	}
	return sc.Errorf(at+".workload", "no workload named %q in spec.workloads", x.Workload)
}

func checkEndpoint(sc *scenarios.Scenario, x scenarios.Expectation, at string) error {
	if err := checkAppWorkload(sc, x, at); err != nil {
		return err
	}
	switch x.From {
	case "", "lan", "node":
	default:
		return sc.Errorf(at+".from", "from %q: probe from lan (the site's gateway, on the node's LAN) or node (the node itself)", x.From)
	}
	if x.HTTP != "" && x.HTTP[0] != '/' {
		return sc.Errorf(at+".http", "http %q: give a path such as /healthz", x.HTTP)
	}
	return nil
}
