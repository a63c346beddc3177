package validators

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/units"
)

// Evidence is what a run left behind.
type Evidence struct {
	Scenario *scenarios.Scenario
	// Start is when the timeline started; End when the run stopped
	// collecting (after the settle time).
	Start, End time.Time
	// Events is every event of the run, time-ordered.
	Events []wire.Event
	// Streams is the sink's summary of what it stored.
	Streams []record.StreamSummary
	// Hashes is the content hash (record.Hash) the sink holds under each
	// record key; nil when not read.
	Hashes map[string]string
	// Windows are the impairments as applied, with real times.
	Windows []Window
	// HoldDown is failover's scaled hold-down (fail-back takes this long
	// after a restore); 0 without failover.
	HoldDown time.Duration
	// AppProblems are the lines of apps' evidence (ReadAppEvents) that
	// break its contract, as file:line: what; validators that read app
	// evidence fail on them.
	AppProblems []string
}

// Window is one impairment of one member's link.
type Window struct {
	Target     string
	Start, End time.Time
	Outage     bool
	RateBps    float64       // down: what the member receives (a gate's download test)
	UpRateBps  float64       // up: what it sends
	Delay      time.Duration // one way
	Loss       float64
	What       string
}

// Validator judges one expectation.
type Validator interface {
	Validate(ev *Evidence, x scenarios.Expectation) Verdict
}

// Judge runs every expectation of the scenario.
func Judge(ev *Evidence) []Verdict {
	var out []Verdict
	for _, x := range ev.Scenario.Spec.Expect {
		v, ok := Lookup(x.Validator)
		if !ok {
			out = append(out, Verdict{Validator: x.Validator, Group: x.Group, Summary: "no such validator"})
			continue
		}
		vd := v.Validate(ev, x)
		vd.Validator, vd.Group = x.Validator, x.Group
		out = append(out, vd)
	}
	return out
}

// members resolves x's group (all nodes when it has none).
func (ev *Evidence) members(group string) []scenarios.Member {
	if group == "" {
		group = "all"
	}
	ms, _ := ev.Scenario.Spec.Resolve(group)
	return ms
}

// events returns the events of node and component (any when empty) whose
// name is one of names (any when none), within [from, to].
func (ev *Evidence) events(node, component string, from, to time.Time, names ...string) []wire.Event {
	var out []wire.Event
	for _, e := range ev.Events {
		if (node != "" && e.Node != node) || (component != "" && e.Component != component) || e.Time.Before(from) || e.Time.After(to) {
			continue
		}
		if len(names) > 0 && !contains(names, e.Event) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// degraded lists the merged windows during which m's path to the cloud
// (its own link, and its gateway's uplink) was cut, or, when judge is not
// nil, impaired in a way judge calls degraded.
func (ev *Evidence) degraded(m scenarios.Member, judge func(Window) bool) []Window {
	return ev.merged(judge, m.Name, m.Gateway)
}

// merged lists the merged windows of the targets named (empty names are
// ignored) that are outages or that judge calls degraded.
func (ev *Evidence) merged(judge func(Window) bool, targets ...string) []Window {
	var ws []Window
	for _, w := range ev.Windows {
		if w.Target == "" || !contains(targets, w.Target) {
			continue
		}
		if w.Outage || (judge != nil && judge(w)) {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start.Before(ws[j].Start) })
	var out []Window
	for _, w := range ws {
		// Back-to-back impairments (a degradation, then an outage) are
		// one stretch of bad link.
		if n := len(out); n > 0 && !w.Start.After(out[n-1].End.Add(time.Second)) {
			if w.End.After(out[n-1].End) {
				out[n-1].End = w.End
			}
			out[n-1].What += ", then " + w.What
			out[n-1].Outage = out[n-1].Outage || w.Outage
			continue
		}
		out = append(out, w)
	}
	return out
}

// gateDegrades says whether a window's link fails the scenario's gate
// thresholds (the gate is expected to close for it).
func (ev *Evidence) gateDegrades(w Window) bool {
	g := ev.Scenario.Spec.Runtime.Gate
	if g.MinDownload != "" && w.RateBps > 0 {
		if r, err := units.ParseRate(g.MinDownload); err == nil && w.RateBps < float64(r) {
			return true
		}
	}
	return g.MaxLatency > 0 && 2*w.Delay > g.MaxLatency.D()
}

// stateAt is the last state event of node's component at or before t
// ("" if none).
func (ev *Evidence) stateAt(node, component string, t time.Time, states ...string) (wire.Event, bool) {
	var last wire.Event
	ok := false
	for _, e := range ev.Events {
		if e.Time.After(t) {
			break
		}
		if e.Node == node && e.Component == component && contains(states, e.Event) {
			last, ok = e, true
		}
	}
	return last, ok
}

// rel formats t as seconds since the timeline started.
func (ev *Evidence) rel(t time.Time) string {
	return fmt.Sprintf("t+%.1fs", t.Sub(ev.Start).Seconds())
}

func secs(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / float64(time.Second) }

func within(x scenarios.Expectation, def time.Duration) time.Duration {
	if x.Within > 0 {
		return x.Within.D()
	}
	return def
}

// verdict collects per-node findings into one verdict.
type verdict struct {
	Verdict
	lines []string
	fails int
}

func newVerdict() *verdict {
	return &verdict{Verdict: Verdict{Pass: true, Numbers: map[string]float64{}}}
}

func (v *verdict) ok(format string, a ...any) { v.lines = append(v.lines, fmt.Sprintf(format, a...)) }

func (v *verdict) fail(format string, a ...any) {
	v.fails++
	v.Pass = false
	v.lines = append(v.lines, "FAIL "+fmt.Sprintf(format, a...))
}

// quote adds events to the verdict's evidence, each once, at most 12.
func (v *verdict) quote(es ...wire.Event) {
	for _, e := range es {
		if len(v.Evidence) < 12 && !slices.ContainsFunc(v.Evidence, func(q wire.Event) bool { return sameEvent(q, e) }) {
			v.Evidence = append(v.Evidence, e)
		}
	}
}

// sameEvent says a and b are the same line of evidence.
func sameEvent(a, b wire.Event) bool {
	return a.Time.Equal(b.Time) && a.Node == b.Node && a.Component == b.Component && a.Event == b.Event && fmt.Sprint(a.Fields) == fmt.Sprint(b.Fields)
}

func (v *verdict) mark(node string, t time.Time, label string, pass bool) {
	v.Marks = append(v.Marks, Mark{Node: node, Time: t, Label: label, Pass: pass})
}

func (v *verdict) done() Verdict {
	if len(v.lines) == 0 {
		v.Pass = false
		v.lines = append(v.lines, "FAIL nothing in the group to judge")
	}
	// Failures first: they are what a reader looks for.
	sort.SliceStable(v.lines, func(i, j int) bool {
		return strings.HasPrefix(v.lines[i], "FAIL") && !strings.HasPrefix(v.lines[j], "FAIL")
	})
	v.Summary = strings.Join(v.lines, "; ")
	v.Lines = v.lines
	return v.Verdict
}
