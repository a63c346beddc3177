package validators

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

const scenario = `apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: t}
spec:
  topology:
    sites:
    - name: s
      buildings:
      - {name: a, gateway: {name: gw-a}, nodes: [a1]}
      - {name: b, gateway: {name: gw-b}, nodes: [b1]}
  runtime:
    gate: {minDownload: 5mbit, maxLatency: 300ms}
    failover: {enabled: true, actions: [label, taint]}
  timeline:
  - {at: 10s, group: gw-a, outage: true, for: 20s}
  duration: 1m
  expect:
  - {validator: gate-follows-link, group: all}
`

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func ev(s float64, node, component, event string, kv ...any) wire.Event {
	f := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i].(string)] = kv[i+1]
	}
	return wire.Event{Time: at(s), Node: node, Component: component, Event: event, Fields: f}
}

func evidence(t *testing.T, evs ...wire.Event) *Evidence {
	sc, err := scenarios.ParseScenario("t.yaml", []byte(scenario))
	if err != nil {
		t.Fatal(err)
	}
	base := []wire.Event{ev(-5, "a1", "gate", "open"), ev(-5, "b1", "gate", "open"), ev(-5, "a1", "supervisor", "started", "process", "runtime")}
	return &Evidence{Scenario: sc, Start: t0, End: at(60), Events: append(base, evs...), HoldDown: 3 * time.Second,
		Windows: []Window{{Target: "gw-a", Start: at(10), End: at(30), Outage: true, What: "outage"}}}
}

func TestValidators(t *testing.T) {
	two := 2
	for _, tc := range []struct {
		name      string
		validator string
		x         scenarios.Expectation
		evs       []wire.Event
		streams   []record.StreamSummary
		pass      bool
		want      string
	}{
		{"gate shuts and reopens in time", "gate-follows-link", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(13, "a1", "gate", "unknown"), ev(38, "a1", "gate", "open")}, nil, true, "shut 3.0 s"},
		{"gate shuts late", "gate-follows-link", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(27, "a1", "gate", "closed"), ev(38, "a1", "gate", "open")}, nil, false, "bound 15s"},
		{"gate never reopens", "gate-follows-link", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(13, "a1", "gate", "closed")}, nil, false, "not open again"},
		{"gate opens mid-outage", "gate-follows-link", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(13, "a1", "gate", "closed"), ev(20, "a1", "gate", "open"), ev(21, "a1", "gate", "closed"), ev(35, "a1", "gate", "open")}, nil, false, "still degraded"},
		{"undisturbed gate closes", "gate-follows-link", scenarios.Expectation{Group: "s/b"},
			[]wire.Event{ev(20, "b1", "gate", "closed")}, nil, false, "undisturbed"},
		{"fetches only while open", "no-fetch-while-closed", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(5, "a1", "workload", "fetched"), ev(13, "a1", "gate", "closed"), ev(13.5, "a1", "workload", "fetched"), ev(38, "a1", "gate", "open"), ev(40, "a1", "workload", "fetched")}, nil, true, "3 fetches"},
		{"fetch while closed", "no-fetch-while-closed", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(5, "a1", "workload", "fetched"), ev(13, "a1", "gate", "closed"), ev(31, "a1", "workload", "fetched"), ev(38, "a1", "gate", "open")}, nil, false, "1 fetches completed while the gate was not open"},
		{"never fetched", "no-fetch-while-closed", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(5, "a1", "workload", "paused")}, nil, false, "fetched nothing"},
		{"delivered", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 2, First: 1, Last: 2}}, true, "2 acknowledged"},
		{"acknowledged and lost", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 1, First: 1, Last: 1}}, false, "records 2-2 of stream r"},
		{"forged under its keys", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 2, First: 1, Last: 2, Conflicts: 2}}, false, "conflicted at the sink"},
		{"gap at the sink", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/3"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 2, First: 1, Last: 3, Gaps: [][2]uint64{{2, 2}}}}, false, "holes"},
		{"flush too slow", "delivered-exactly-once", scenarios.Expectation{Group: "s/a", Within: scenarios.Duration(5 * time.Second)},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(35, "a1", "sampler", "sample", "depth", 3.0), ev(40, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 1, First: 1, Last: 1}}, false, "emptied 10.0 s"},
		{"acknowledged records survive a power loss", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2"), ev(3, "a1", "timeline", "power-off"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 3, First: 1, Last: 3}}, true, "every acknowledged record survived; the sink also holds 1 records past the last acknowledged"},
		{"acknowledged records lost to a power loss", "delivered-exactly-once", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1"), ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2"), ev(3, "a1", "timeline", "power-off"), ev(35, "a1", "sampler", "sample", "depth", 0.0)},
			[]record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 1, First: 1, Last: 1}}, false, "1 acknowledged records were never delivered: an acknowledgement must mean on disk"},
		{"switched and back", "routes-switched", scenarios.Expectation{Group: "all"},
			[]wire.Event{ev(0, "a1", "failover", "watching"), ev(0, "b1", "failover", "watching"), ev(12, "a1", "failover", "alternate"), ev(34, "a1", "failover", "primary")}, nil, true, "switched 2.0 s"},
		{"failover off", "routes-switched", scenarios.Expectation{Group: "s/a"}, nil, nil, false, "failover is off"},
		{"undisturbed node switched", "routes-switched", scenarios.Expectation{Group: "s/b"},
			[]wire.Event{ev(0, "b1", "failover", "watching"), ev(12, "b1", "failover", "alternate")}, nil, false, "uplink was fine"},
		{"tagged and untagged", "node-tagged", scenarios.Expectation{Group: "gw-a"},
			[]wire.Event{ev(-1, "gw-a", "kube", "node", "uplink", ""), ev(12, "gw-a", "kube", "node", "uplink", "down", "tainted", true), ev(33, "gw-a", "kube", "node", "uplink", "", "tainted", false)}, nil, true, "tainted 2.0 s"},
		{"labelled without the taint", "node-tagged", scenarios.Expectation{Group: "gw-a"},
			[]wire.Event{ev(-1, "gw-a", "kube", "node", "uplink", ""), ev(12, "gw-a", "kube", "node", "uplink", "down", "tainted", false), ev(33, "gw-a", "kube", "node", "uplink", "")}, nil, false, "never labelled uplink=down, tainted"},
		{"a node behind a cut gateway stays untagged", "node-tagged", scenarios.Expectation{Group: "a1"},
			[]wire.Event{ev(-1, "a1", "kube", "node", "uplink", "")}, nil, true, "never tagged"},
		{"an undisturbed node reporting primary has not left", "routes-switched", scenarios.Expectation{Group: "s/b"},
			[]wire.Event{ev(0, "b1", "failover", "watching"), ev(20, "b1", "failover", "primary")}, nil, true, "stayed on its own gateway"},
		{"a fetch with the runtime down", "no-fetch-while-closed", scenarios.Expectation{Group: "s/a"},
			[]wire.Event{ev(5, "a1", "workload", "fetched"), ev(40, "a1", "supervisor", "exited", "process", "runtime"), ev(41, "a1", "workload", "fetched"), ev(42, "a1", "supervisor", "started", "process", "runtime")}, nil, false, "1 fetches completed while the gate was not open"},
		{"planned kill restarted", "no-restart-loops", scenarios.Expectation{},
			[]wire.Event{ev(20, "a1", "supervisor", "exited", "process", "runtime", "planned", true), ev(20.1, "a1", "supervisor", "started", "process", "runtime", "planned", true)}, nil, true, "0 unplanned"},
		{"crash loop", "no-restart-loops", scenarios.Expectation{Max: &two},
			[]wire.Event{ev(20, "a1", "supervisor", "exited", "process", "runtime"), ev(21, "a1", "supervisor", "exited", "process", "runtime"), ev(23, "a1", "supervisor", "exited", "process", "runtime")}, nil, false, "exited 3 times unplanned (max 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := evidence(t, tc.evs...)
			e.Streams = tc.streams
			v, ok := Lookup(tc.validator)
			if !ok {
				t.Fatalf("no validator %s", tc.validator)
			}
			got := v.Validate(e, tc.x)
			if got.Pass != tc.pass || !strings.Contains(got.Summary, tc.want) {
				t.Errorf("pass %v %q, want pass %v and %q", got.Pass, got.Summary, tc.pass, tc.want)
			}
		})
	}
}

// The built-in scenarios name only validators that exist, with their
// parameters.
func TestBuiltinsCheck(t *testing.T) {
	for _, name := range scenarios.Builtins() {
		sc, err := scenarios.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(sc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := Names(); len(got) != 12 || got[0] != "delivered" || got[1] != "delivered-exactly-once" {
		t.Errorf("Names() = %v", got)
	}
}

// A scenario that asks a validator what it cannot do is refused with the
// file and line of the expectation.
func TestCheckRefuses(t *testing.T) {
	src, err := scenarios.BuiltinSource("vehicle")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown validator", "validator: gate-follows-link", "validator: gate-is-fine", "unknown validator \"gate-is-fine\": use one of delivered, delivered-exactly-once,"},
		{"param it does not take", "{validator: no-fetch-while-closed, group: truck}", "{validator: no-fetch-while-closed, group: truck, within: 3s}", "does not take within"},
		{"no group", "{validator: no-fetch-while-closed, group: truck}", "{validator: no-fetch-while-closed}", "needs a group"},
		{"a group for the whole run", "{validator: no-restart-loops}", "{validator: no-restart-loops, group: truck}", "give it no group"},
		{"order asked of a validator that does not judge it", "{validator: no-fetch-while-closed, group: truck}", "{validator: no-fetch-while-closed, group: truck, ordered: true}", "does not take ordered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(src), tc.old, tc.new, 1)
			if bad == string(src) {
				t.Fatalf("%q does not apply", tc.old)
			}
			sc, err := scenarios.ParseScenario("bad.yaml", []byte(bad))
			if err != nil {
				t.Fatal(err)
			}
			line := 0
			for i, l := range strings.Split(bad, "\n") {
				if strings.Contains(l, tc.new) {
					line = i + 1
				}
			}
			err = Check(sc)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("bad.yaml:%d:", line)) {
				t.Errorf("Check = %v, want bad.yaml:%d: ... %s", err, line, tc.want)
			}
		})
	}
}

// The sink's sequence coverage cannot tell a forged record from the real
// one: the content hash acknowledged to the producer must be the one the
// sink holds under the key.
func TestDeliveredComparesContent(t *testing.T) {
	acked := []wire.Event{
		ev(1, "a1", "producer", "acked", "key", "a1/e1/r/1", "hash", "aaaa"),
		ev(2, "a1", "producer", "acked", "key", "a1/e1/r/2", "hash", "bbbb"),
		ev(35, "a1", "sampler", "sample", "depth", 0.0),
	}
	streams := []record.StreamSummary{{Node: "a1", Epoch: "e1", Stream: "r", Count: 2, First: 1, Last: 2}}
	for _, tc := range []struct {
		name   string
		hashes map[string]string
		pass   bool
		want   string
	}{
		{"same content", map[string]string{"a1/e1/r/1": "aaaa", "a1/e1/r/2": "bbbb"}, true, "2 with the content acknowledged"},
		{"forged under a key", map[string]string{"a1/e1/r/1": "aaaa", "a1/e1/r/2": "ffff"}, false, "a1/e1/r/2 was acknowledged with content bbbb"},
		{"hashes not read", nil, true, "2 acknowledged, all at the sink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := evidence(t, acked...)
			e.Streams, e.Hashes = streams, tc.hashes
			x := scenarios.Expectation{Validator: "delivered-exactly-once", Group: "s/a"}
			v := DeliveredExactlyOnce{}.Validate(e, x)
			if v.Pass != tc.pass || !strings.Contains(v.Summary, tc.want) {
				t.Fatalf("pass=%v %q; want pass=%v containing %q", v.Pass, v.Summary, tc.pass, tc.want)
			}
			if tc.hashes != nil && v.Numbers["a1.contentChecked"] != 2 {
				t.Errorf("contentChecked = %v, want 2", v.Numbers["a1.contentChecked"])
			}
		})
	}
}

// The sink's evidence shows it kept to its ingest rate, or not, and how
// the backlog of the last outage drained.
func TestSinkWithinLimit(t *testing.T) {
	admission := ev(-5, "cloud", "sink", "admission", "rateBytesPerSecond", 1e6, "burstBytes", 5e5)
	// A batch of 250 kB every 0.25 s: 1 MB/s, the rate.
	paced := func(from, to float64) []wire.Event {
		var out []wire.Event
		for s := from; s < to; s += 0.25 {
			out = append(out, ev(s, "cloud", "sink", "admitted", "bytes", 250e3))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		evs  []wire.Event
		pass bool
		want string
	}{
		{"at the rate", append([]wire.Event{admission}, paced(1, 20)...), true, "at most 2.0 MB in any 2s"},
		{"a burst above it", append(append([]wire.Event{admission}, paced(1, 20)...), ev(10, "cloud", "sink", "admitted", "bytes", 2e6)), false, "1.75 MB more than its bucket held at t+10.0s"},
		// Within rate and burst over any 2 s, yet let in before the bucket
		// had refilled: what the 2 s sum misses, the replay finds.
		{"early, not large", append(append([]wire.Event{admission}, paced(1, 20)...), ev(10.1, "cloud", "sink", "admitted", "bytes", 4e5)), false, "0.15 MB more than its bucket held"},
		{"no bound", paced(1, 5), false, "without an ingest rate"},
		// Let in at the rate, written down late and together (a loaded
		// machine woke the handlers late): judged by when they were due.
		{"late wake-ups", append([]wire.Event{admission}, func() []wire.Event {
			var out []wire.Event
			for s := 1.0; s < 5; s += 0.25 {
				out = append(out, ev(5, "cloud", "sink", "admitted", "bytes", 250e3, "due", []any{at(s).Format(time.RFC3339Nano)}, "partBytes", []any{250e3}))
			}
			return out
		}()...), true, "at most 2.0 MB in any 2s"},
		// A batch twice the burst, let in as two parts half a second apart
		// from a full bucket, then batches at the rate: within the bound by
		// its parts (2.25 MB in the 2 s from the second), over it if the
		// whole batch were booked at its last part (2.75 MB).
		{"a batch larger than the burst", append(append([]wire.Event{admission}, paced(10.75, 20)...),
			ev(10.5, "cloud", "sink", "admitted", "bytes", 1e6, "due", []any{at(10).Format(time.RFC3339Nano), at(10.5).Format(time.RFC3339Nano)}, "partBytes", []any{5e5, 5e5})), true, "at most 2.2 MB in any 2s"},
		{"refusals counted", append(append([]wire.Event{admission}, paced(1, 5)...), ev(3, "cloud", "sink", "refused", "bound", "rate"), ev(3.1, "cloud", "sink", "refused", "bound", "concurrency")), true, "2 batches refused"},
		{"the backlog drained", append(append([]wire.Event{admission}, paced(31, 40)...),
			ev(31, "cloud", "sink", "received", "bytes", 1e6, "oldest", at(15).Format(time.RFC3339Nano)),
			ev(34, "cloud", "sink", "received", "bytes", 2e6, "oldest", at(29).Format(time.RFC3339Nano)),
			ev(36, "cloud", "sink", "received", "bytes", 1e6, "oldest", at(31).Format(time.RFC3339Nano))), true, "a 3.0 MB backlog arrived in 3.0 s (backlog ÷ ingest rate: 3.0 s, 1.00x; the sink took 3.2 MB in that time, 108% of its rate, so 1.08x of what the capacity live traffic left allowed)"},
		// The batch at 34 s holds records appended from 29 s to 33 s, a
		// quarter of them before the restore at 30 s: 0.5 MB of backlog,
		// not 2 MB.
		{"a batch partly backlog", append(append([]wire.Event{admission}, paced(31, 40)...),
			ev(31, "cloud", "sink", "received", "bytes", 1e6, "oldest", at(15).Format(time.RFC3339Nano), "newest", at(25).Format(time.RFC3339Nano)),
			ev(34, "cloud", "sink", "received", "bytes", 2e6, "oldest", at(29).Format(time.RFC3339Nano), "newest", at(33).Format(time.RFC3339Nano))), true, "a 1.5 MB backlog arrived in 3.0 s"},
		// b1 never lost its link: its batch in flight at the restore is
		// no backlog, and does not start the drain's clock.
		{"only the cut nodes' backlog", append(append([]wire.Event{admission}, paced(31, 40)...),
			ev(30.2, "cloud", "sink", "received", "bytes", 5e5, "node", "b1", "oldest", at(29.9).Format(time.RFC3339Nano), "newest", at(29.95).Format(time.RFC3339Nano)),
			ev(31, "cloud", "sink", "received", "bytes", 1e6, "node", "a1", "oldest", at(15).Format(time.RFC3339Nano), "newest", at(25).Format(time.RFC3339Nano)),
			ev(34, "cloud", "sink", "received", "bytes", 1e6, "node", "a1", "oldest", at(20).Format(time.RFC3339Nano), "newest", at(29).Format(time.RFC3339Nano))), true, "a 2.0 MB backlog arrived in 3.0 s (backlog ÷ ingest rate: 2.0 s"},
		// a1's batch in flight through the outage arrives at the restore;
		// its forwarder resumes at 32 s: the drain starts there.
		{"a batch in flight through the outage", append(append([]wire.Event{admission}, paced(31, 40)...),
			ev(30.1, "cloud", "sink", "received", "bytes", 5e5, "node", "a1", "oldest", at(9).Format(time.RFC3339Nano), "newest", at(9.5).Format(time.RFC3339Nano)),
			ev(32, "a1", "buffer", "flush-resumed"),
			ev(32.5, "cloud", "sink", "received", "bytes", 1e6, "node", "a1", "oldest", at(15).Format(time.RFC3339Nano), "newest", at(25).Format(time.RFC3339Nano)),
			ev(35.5, "cloud", "sink", "received", "bytes", 1e6, "node", "a1", "oldest", at(20).Format(time.RFC3339Nano), "newest", at(29).Format(time.RFC3339Nano))), true, "a 2.0 MB backlog arrived in 3.0 s (backlog ÷ ingest rate: 2.0 s"},
		// Live traffic took a quarter of the sink: the backlog could not come
		// in quicker than 2.5 MB ÷ 0.75 MB/s, and the sink was seldom idle.
		{"a drain beside live traffic", append([]wire.Event{admission}, func() []wire.Event {
			var out []wire.Event
			for s := 31.0; s <= 35; s += 0.5 {
				out = append(out, ev(s, "cloud", "sink", "admitted", "bytes", 125e3))
			}
			for s := 31.25; s <= 35.25; s++ {
				out = append(out, ev(s, "cloud", "sink", "admitted", "bytes", 5e5),
					ev(s, "cloud", "sink", "received", "bytes", 5e5, "records", 10, "duplicates", 0, "oldest", at(20).Format(time.RFC3339Nano)))
			}
			// Half of one batch was records the sink had: busy, not
			// draining.
			out[len(out)-3].Fields["duplicates"] = 5
			return out
		}()...), true, "a 2.5 MB backlog arrived in 4.0 s (backlog ÷ ingest rate: 2.5 s, 1.60x; the sink took 3.5 MB in that time, 88% of its rate, so 1.50x of what"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := evidence(t, tc.evs...)
			got := SinkWithinLimit{}.Validate(e, scenarios.Expectation{Validator: "sink-within-limit"})
			if got.Pass != tc.pass || !strings.Contains(got.Summary, tc.want) {
				t.Fatalf("pass=%v %q; want pass=%v and %q", got.Pass, got.Summary, tc.pass, tc.want)
			}
		})
	}
}
