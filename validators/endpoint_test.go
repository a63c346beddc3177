package validators

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// appScenario is the validators' scenario with an app on every node.
const appScenario = scenario + `  workloads:
  - {name: app, type: command, on: all, command: [/usr/local/bin/app], port: 8000}
`

func appEvidence(t *testing.T, evs ...wire.Event) *Evidence {
	t.Helper()
	sc, err := scenarios.ParseScenario("t.yaml", []byte(appScenario))
	if err != nil {
		t.Fatal(err)
	}
	return &Evidence{Scenario: sc, Start: t0, End: at(60), Events: evs,
		Windows: []Window{{Target: "gw-a", Start: at(10), End: at(30), Outage: true, What: "outage"}}}
}

// probes are a1's probes every second from from to to (seconds), all
// answered in ms, but those for which fail says no.
func probes(from, to int, ms float64, fail func(s int) bool) []wire.Event {
	var out []wire.Event
	for s := from; s < to; s++ {
		if fail != nil && fail(s) {
			out = append(out, ev(float64(s), "a1", ProbeComponent, ProbeFailed, "workload", "app", "via", "lan tcp", "ms", 2000.0, "err", "connection refused"))
			continue
		}
		out = append(out, ev(float64(s), "a1", ProbeComponent, ProbeAnswered, "workload", "app", "via", "lan tcp", "ms", ms))
	}
	return out
}

func TestEndpointAnswers(t *testing.T) {
	x := scenarios.Expectation{Validator: "endpoint-answers", Group: "s/a", Workload: "app"}
	slow := x
	slow.MaxLatency = scenarios.Duration(100 * time.Millisecond)
	lenient := x
	lenient.MinShare = "60%"
	for _, tc := range []struct {
		name string
		x    scenarios.Expectation
		evs  []wire.Event
		pass bool
		want string
	}{
		{"answers all along", x, probes(0, 60, 5, nil), true, "answered 60 of 60 probes (100.0%), during its outages 20/20"},
		{"stops while offline", x, probes(0, 60, 5, func(s int) bool { return s >= 10 && s < 30 }), false, "answered 0 of 20 probes during the outage at +10s"},
		{"a blip within the share", lenient, probes(0, 60, 5, func(s int) bool { return s == 20 }), true, "59 of 60"},
		{"too slow counts as not answered", slow, probes(0, 60, 150, nil), false, "each within 100ms"},
		{"no probe during the outage", x, append(probes(0, 10, 5, nil), probes(30, 60, 5, nil)...), false, "no probe during the outage"},
		{"never probed", x, nil, false, "no probe of app recorded"},
		{"another expectation's probes are not this one's", scenarios.Expectation{Validator: "endpoint-answers", Group: "s/a", Workload: "app", From: "node"}, probes(0, 60, 5, nil), false, "no probe of app recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := EndpointAnswers{}.Validate(appEvidence(t, tc.evs...), tc.x)
			if got.Pass != tc.pass || !strings.Contains(got.Summary, tc.want) {
				t.Errorf("pass %v %q, want pass %v and %q", got.Pass, got.Summary, tc.pass, tc.want)
			}
		})
	}
}

// samples are a1's scrapes of bound, one a second from from to to, the
// value at s given by v.
func samples(bound string, from, to int, v func(s int) float64) []wire.Event {
	var out []wire.Event
	for s := from; s < to; s++ {
		out = append(out, ev(float64(s), "a1", ScrapeComponent, ScrapeSample, "workload", "app", "bound", bound, "series", "q", "value", v(s)))
	}
	return out
}

func TestMetric(t *testing.T) {
	queue := func(s int) float64 { // grows offline, drains 5 s after
		switch {
		case s >= 10 && s < 30:
			return float64(s - 9)
		case s >= 30 && s < 35:
			return float64(35 - s)
		}
		return 0
	}
	m := func(bound, phase string, within time.Duration) scenarios.Expectation {
		return scenarios.Expectation{Validator: "metric", Group: "s/a", Workload: "app", Metric: bound, Phase: phase, Within: scenarios.Duration(within)}
	}
	for _, tc := range []struct {
		name string
		x    scenarios.Expectation
		evs  []wire.Event
		pass bool
		want string
	}{
		{"drains within the bound", m("q == 0", "after", 6*time.Second), samples("q == 0", 0, 60, queue), true, "held in 24 samples after"},
		{"not drained yet", m("q == 0", "after", 2*time.Second), samples("q == 0", 0, 60, queue), false, "broke \"q == 0\" in 3 of 28 samples after (seen 0 to 3)"},
		{"grows offline", m("q > 0", "during", 0), samples("q > 0", 0, 60, queue), true, "held in 20 samples during (seen 1 to 20)"},
		{"not offline at all", m("q > 0", "during", 0), samples("q > 0", 0, 60, func(int) float64 { return 0 }), false, "in 20 of 20 samples during"},
		{"empty before", m("q == 0", "before", 0), samples("q == 0", 0, 60, queue), true, "held in 10 samples before"},
		{"bounded always", m("q <= 20", "", 0), samples("q <= 20", 0, 60, queue), true, "held in 60 samples always"},
		{"broken always", m("q < 10", "", 0), samples("q < 10", 0, 60, queue), false, "seen 0 to 20"},
		{"unknown metric", m("nope == 0", "", 0), []wire.Event{ev(1, "a1", ScrapeComponent, ScrapeAbsent, "workload", "app", "bound", "nope == 0", "exposes", "q, r")}, false, "app does not expose nope (it exposes: q, r)"},
		{"scrapes failed", m("q == 0", "", 0), []wire.Event{ev(1, "a1", ScrapeComponent, ScrapeFailed, "workload", "app", "bound", "q == 0", "err", "connection refused")}, false, "scraping app failed (connection refused)"},
		{"another bound's samples are not this one's", m("q == 0", "", 0), samples("q > 0", 0, 60, queue), false, "no sample of q always"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Metric{}.Validate(appEvidence(t, tc.evs...), tc.x)
			if got.Pass != tc.pass || !strings.Contains(got.Summary, tc.want) {
				t.Errorf("pass %v %q, want pass %v and %q", got.Pass, got.Summary, tc.pass, tc.want)
			}
		})
	}
}

func TestParseMetricBound(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // what String-ish parts it gives, or the error's words
		ok   bool
	}{
		{"app_queue_depth <= 100", "app_queue_depth <= 100 []", true},
		{`app_sent_total{stream="a,b",node!="x\"y"} > 0`, `app_sent_total > 0 [{stream a,b false} {node x"y true}]`, true},
		{"up==1", "up == 1 []", true},
		{"app_queue_depth", "OP NUMBER", false},
		{"app_queue_depth < lots", `"lots" is not a number`, false},
		{`q{stream=a} > 0`, "label matcher", false},
		{"q > NaN", "not a number", false},
		{"sum(rate(q[5m])) > 0", "OP NUMBER", false},
	} {
		b, err := ParseMetricBound(tc.in)
		if tc.ok {
			if err != nil {
				t.Errorf("%q: %v", tc.in, err)
				continue
			}
			var ms []string
			for _, m := range b.Matchers {
				ms = append(ms, strings.TrimSpace(strings.Join([]string{"{" + m.Label, m.Value, map[bool]string{true: "true}", false: "false}"}[m.Not]}, " ")))
			}
			if got := b.Name + " " + b.Op + " " + strconv.FormatFloat(b.Value, 'g', -1, 64) + " [" + strings.Join(ms, " ") + "]"; got != tc.want {
				t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	b, _ := ParseMetricBound(`q{a="1",b!="2"} >= 3`)
	if !b.Selects(map[string]string{"a": "1", "b": "3"}) || b.Selects(map[string]string{"a": "1", "b": "2"}) || b.Selects(map[string]string{"a": "2"}) {
		t.Error("matchers select the wrong series")
	}
	if !b.Holds(3) || b.Holds(2.9) {
		t.Error(">= 3 judged wrongly")
	}
}

// An app expectation that cannot be judged is refused before anything
// starts, with its line and what to write instead.
func TestCheckRefusesAppExpectations(t *testing.T) {
	src := strings.Replace(appScenario, "  - {name: app,", "  - {name: noport, type: command, on: all, command: [/bin/true]}\n  - {name: app,", 1)
	for _, tc := range []struct{ line, want string }{
		{"{validator: endpoint-answers, group: all}", "needs a workload"},
		{"{validator: endpoint-answers, group: all, workload: nope}", `no workload named "nope"`},
		{"{validator: endpoint-answers, group: all, workload: noport}", "has no port"},
		{"{validator: endpoint-answers, group: all, workload: app, from: cloud}", "probe from lan"},
		{"{validator: endpoint-answers, group: all, workload: app, http: healthz}", "give a path"},
		{"{validator: endpoint-answers, group: all, workload: app, phase: after}", "does not take phase"},
		{"{validator: metric, group: all, workload: app}", "needs a metric bound"},
		{"{validator: metric, group: all, workload: app, metric: 'rate(q[5m]) > 1'}", "NAME{LABEL=\"VALUE\",...} OP NUMBER"},
		{"{validator: metric, group: all, workload: app, metric: 'q > 1', phase: later}", `phase "later"`},
		{"{validator: metric, group: all, workload: app, metric: 'q > 1', within: 5s}", "give it with phase: after"},
		{"{validator: metric, group: all, workload: app, metric: 'q > 1', maxLatency: 1s}", "does not take maxLatency"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			bad := strings.Replace(src, "  - {validator: gate-follows-link, group: all}\n", "  - {validator: gate-follows-link, group: all}\n  - "+tc.line+"\n", 1)
			sc, err := scenarios.ParseScenario("bad.yaml", []byte(bad))
			if err != nil {
				t.Fatal(err)
			}
			err = Check(sc)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.yaml:19:") {
				t.Errorf("Check = %v, want bad.yaml:19: ... %s", err, tc.want)
			}
		})
	}
	good := strings.Replace(src, "  - {validator: gate-follows-link, group: all}\n", "  - {validator: endpoint-answers, group: all, workload: app, http: /healthz, maxLatency: 200ms, minShare: 95%}\n  - {validator: metric, group: all, workload: app, metric: 'q{s=\"a\"} <= 3', phase: after, within: 5s}\n", 1)
	sc, err := scenarios.ParseScenario("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(sc); err != nil {
		t.Errorf("a good scenario refused: %v", err)
	}
}

// A verdict quotes an event once however often it is pointed at, and
// gives its summary as rows, failures first.
func TestVerdictRowsAndQuotes(t *testing.T) {
	v := newVerdict()
	e := ev(1, "a1", "gate", "closed")
	v.quote(e, e)
	v.quote(e, ev(2, "a1", "gate", "closed"))
	v.ok("a1: fine")
	v.fail("b1: broken")
	got := v.done()
	if len(got.Evidence) != 2 {
		t.Errorf("quoted %d events, want 2 (one repeated): %v", len(got.Evidence), got.Evidence)
	}
	if strings.Join(got.Lines, "|") != "FAIL b1: broken|a1: fine" || got.Summary != "FAIL b1: broken; a1: fine" {
		t.Errorf("lines %q summary %q", got.Lines, got.Summary)
	}
}
