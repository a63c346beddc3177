package validators

import (
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

func sent(s float64, node, id string) wire.Event {
	return ev(s, node, AppComponent+"agent", "sent", "id", id)
}

func received(s float64, id string) wire.Event {
	return ev(s, "cloud", AppComponent+"ingest", "received", "id", id)
}

// delivered on synthetic evidence: a1 sits behind gw-a, whose uplink is
// out from 10 s to 30 s; the run ends at 60 s.
func TestDelivered(t *testing.T) {
	five := scenarios.Duration(5 * time.Second)
	one := 1
	for _, tc := range []struct {
		name     string
		x        scenarios.Expectation
		evs      []wire.Event
		problems []string
		pass     bool
		want     string
	}{
		{"all arrive", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "a1", "2"), received(1.5, "1"), received(2.5, "2")}, nil, true, "2 of 2 ids received"},
		{"one lost", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "a1", "2"), received(1.5, "1")}, nil, false, "1 lost (2)"},
		{"held through the outage, then sent", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(12, "a1", "x"), received(33, "x")}, nil, true, "1 of 1"},
		{"late", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "x"), received(9, "x")}, nil, false, "1 late (x)"},
		{"twice", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "x"), received(2, "x"), received(3, "x")}, nil, false, "received more than once (x)"},
		{"twice and late, one id against max", scenarios.Expectation{Group: "s/a", Within: five, Max: &one},
			[]wire.Event{sent(1, "a1", "x"), received(8, "x"), received(9, "x")}, nil, true, "within max 1"},
		{"twice, tolerated", scenarios.Expectation{Group: "s/a", Within: five, Max: &one},
			[]wire.Event{sent(1, "a1", "x"), received(2, "x"), received(3, "x")}, nil, true, "within max 1"},
		{"out of order, asked for order", scenarios.Expectation{Group: "s/a", Within: five, Ordered: true},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "a1", "2"), received(3, "2"), received(4, "1")}, nil, false, "a1: 1 ids arrived out of the order"},
		{"out of order, order not asked", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "a1", "2"), received(3, "2"), received(4, "1")}, nil, true, "2 of 2"},
		{"pending at the end", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "1"), received(2, "1"), sent(58, "a1", "2")}, nil, true, "1 pending"},
		{"nothing sent", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{received(2, "1")}, nil, false, "logged nothing \"sent\""},
		{"an id sent twice", scenarios.Expectation{Group: "all", Within: five},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "b1", "1"), received(3, "1")}, nil, false, "sent twice (by a1 and b1)"},
		{"another group's ids are not counted", scenarios.Expectation{Group: "s/b", Within: five},
			[]wire.Event{sent(1, "a1", "1"), sent(2, "b1", "2"), received(3, "2")}, nil, true, "1 of 1"},
		{"evidence that breaks the contract", scenarios.Expectation{Group: "s/a", Within: five},
			[]wire.Event{sent(1, "a1", "1"), received(2, "1")}, []string{"a1.agent.app.jsonl:3: not a JSON object"}, false, "app evidence a1.agent.app.jsonl:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := evidence(t, tc.evs...)
			e.AppProblems = tc.problems
			got := Delivered{}.Validate(e, tc.x)
			if got.Pass != tc.pass || !strings.Contains(got.Summary, tc.want) {
				t.Errorf("pass %v %q, want pass %v and %q", got.Pass, got.Summary, tc.pass, tc.want)
			}
		})
	}
}

// An app's evidence file: good lines become events labelled with the
// member and workload the harness names (not the line's own), and every
// line that breaks the contract is reported by file and line.
func TestDecodeApp(t *testing.T) {
	in := strings.Join([]string{
		`{"time":"2026-12-06T10:00:00Z","event":"sent","id":"a-1"}`,
		`{"time":"2026-12-06T10:00:01.5Z","event":"received","id":42,"node":"forged","component":"supervisor"}`,
		``,
		`not json`,
		`{"time":"2026-12-06T10:00:02Z","event":"sent"}`,
		`{"event":"sent","id":"3"}`,
		`{"time":"2026-12-06T10:00:03Z","id":"4"}`,
		`{"time":"2026-12-06T10:00:04Z","event":"queued","depth":3}`,
		`{"time":"2026-12-06T10:00:05Z","event":"sent","id":"5"} {"x":1}`,
		strings.Repeat("x", maxAppLine+10),
		`{"time":"2026-12-06T10:00:06Z","event":"sent","id":"6"}`,
		`{"time":"2026-12-06T10:00:07Z","node":"x","component":"producer","event":"acked","fields":{"key":"n1/e/s/1","seq":1}}`,
	}, "\n")
	evs, problems := decodeApp(strings.NewReader(in), "n1.agent.app.jsonl", "n1", "agent")
	var got []string
	for _, e := range evs {
		got = append(got, e.Node+" "+e.Component+" "+e.Event+" "+e.Time.Format("15:04:05.0")+" "+stringField(e, "id")+stringField(e, "key"))
	}
	want := []string{
		"n1 app/agent sent 10:00:00.0 a-1",
		"n1 app/agent received 10:00:01.5 42",
		"n1 app/agent queued 10:00:04.0 ",
		"n1 app/agent sent 10:00:06.0 6",
		"n1 app/agent acked 10:00:07.0 n1/e/s/1", // the runtime's format: its fields are the line's
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantProblems := []string{
		"n1.agent.app.jsonl:4: not a JSON object",
		"n1.agent.app.jsonl:5: a \"sent\" line needs an \"id\"",
		"n1.agent.app.jsonl:6: no RFC 3339 \"time\"",
		"n1.agent.app.jsonl:7: no \"event\"",
		"n1.agent.app.jsonl:9: more than one JSON value",
		"n1.agent.app.jsonl:10: line longer than",
	}
	if len(problems) != len(wantProblems) {
		t.Fatalf("problems:\n%s", strings.Join(problems, "\n"))
	}
	for i, p := range wantProblems {
		if !strings.HasPrefix(problems[i], p) {
			t.Errorf("problem %d = %q, want %q...", i, problems[i], p)
		}
	}
}

func stringField(e wire.Event, k string) string {
	s, _ := e.Fields[k].(string)
	return s
}
