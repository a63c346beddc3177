package scenarios

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBuiltinsParse(t *testing.T) {
	names := Builtins()
	if strings.Join(names, ",") != "factory,field-faults,regional-outage,retail,vehicle" {
		t.Fatalf("built-ins %v, want factory, field-faults, regional-outage, retail, vehicle", names)
	}
	if got := strings.Join(Certified(), ","); got != "factory,retail,vehicle" {
		t.Fatalf("certify's default set %s, want factory, retail, vehicle (regional-outage is the scale suite's)", got)
	}
	ro, err := Builtin("regional-outage")
	if err != nil {
		t.Fatal(err)
	}
	cut, err := ro.Spec.Resolve("regional-isp")
	if err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for _, m := range ro.Spec.Topology.Members() {
		if m.Role == "node" {
			nodes++
		}
	}
	if len(ro.Spec.Topology.Sites) != 100 || len(cut) != 60 || nodes != 120 {
		t.Errorf("regional-outage: %d stores, %d routers cut, %d nodes; want 100, 60, 120", len(ro.Spec.Topology.Sites), len(cut), nodes)
	}
	for _, n := range names {
		s, err := Builtin(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if s.Metadata.Name != n || s.Source != "built-in" || s.Scale(0) < 1 {
			t.Errorf("%s: name %q source %q scale %v", n, s.Metadata.Name, s.Source, s.Scale(0))
		}
	}
	if _, err := Builtin("boat"); err == nil || !strings.Contains(err.Error(), "factory, field-faults, regional-outage, retail, vehicle") {
		t.Errorf("unknown built-in: %v", err)
	}
}

const good = `apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: t}
spec:
  topology:
    sites:
    - name: s
      buildings:
      - {name: a, gateway: {name: gw-a}, nodes: [a1, a2]}
      - {name: b, gateway: {name: gw-b}, nodeCount: 2}
  profiles:
    slow: {rate: 1mbit}
  groups:
    gws: {sites: [s], role: gateway}
  runtime:
    gate: {minDownload: 5mbit}
  workloads:
  - {name: w, type: fetch, on: s/a, period: 1s}
  timeline:
  - {at: 1m, group: gws, profile: slow, for: 1m}
  - {at: 3m, group: a1, kill: workload/w}
  duration: 5m
  expect:
  - {validator: gate-follows-link, group: all, within: 10s}
`

func TestResolveGroups(t *testing.T) {
	s, err := ParseScenario("t.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ group, want string }{
		{"all", "a1,a2,s-b-n1,s-b-n2"},
		{"s", "a1,a2,s-b-n1,s-b-n2"},
		{"s/b", "s-b-n1,s-b-n2"},
		{"gws", "gw-a,gw-b"},
		{"gw-b", "gw-b"},
	} {
		ms, err := s.Spec.Resolve(tc.group)
		if err != nil {
			t.Fatalf("%s: %v", tc.group, err)
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("group %s = %s, want %s", tc.group, got, tc.want)
		}
	}
	if _, err := s.Spec.Resolve("nope"); err == nil {
		t.Error("an unknown group resolved")
	}
}

// Bad scenarios are refused with the file, the line and what to do.
func TestBadScenarios(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		line           int
		want           string
	}{
		{"unknown field", "  duration: 5m", "  duration: 5m\n  colour: red", 23, "field colour not found"},
		{"rate without unit", "slow: {rate: 1mbit}", "slow: {rate: 1}", 12, "has no unit"},
		{"bad rate", "slow: {rate: 1mbit}", `slow: {rate: "5mbps?"}`, 12, "5mbps?"},
		{"bad up rate", "slow: {rate: 1mbit}", `slow: {rate: {down: 1mbit, up: "5mbps?"}}`, 12, "profiles.slow.rate.up: rate \"5mbps?\""},
		{"an unknown rate direction", "slow: {rate: 1mbit}", `slow: {rate: {down: 1mbit, upp: 1mbit}}`, 12, "field upp not found"},
		{"an empty rate", "slow: {rate: 1mbit}", `slow: {rate: {}}`, 12, "give down, up or both"},
		{"an up rate too low", "slow: {rate: 1mbit}", `slow: {rate: {down: 1mbit, up: 1kbit}}`, 12, "up rate 1kbit is below 8kbit"},
		{"duration without unit", "at: 3m, group: a1", "at: 3, group: a1", 21, "not a duration"},
		{"unknown group in step", "group: a1, kill", "group: a9, kill", 21, `no group "a9"`},
		{"unknown node in group", "{sites: [s], role: gateway}", "{members: [gw-z]}", 14, `no node or gateway "gw-z"`},
		{"unknown profile", "profile: slow", "profile: fast", 20, `no profile "fast"`},
		{"negative max", "within: 10s}", "within: 10s, max: -2}", 24, "negative"},
		{"two actions in a step", "kill: workload/w}", "kill: workload/w, outage: true}", 21, "exactly one thing"},
		{"unknown workload", "kill: workload/w}", "kill: workload/x}", 21, "workload/NAME"},
		{"step after the end", "duration: 5m", "duration: 2m", 21, "after the scenario's duration"},
		{"out of order", "at: 3m, group: a1", "at: 30s, group: a1", 21, "before the previous step"},
		{"kill a workload the node does not run", "group: a1, kill: workload/w", "group: gw-a, kill: workload/w", 21, "runs no such workload"},
		{"kill the runtime of a gateway without failover", "group: a1, kill: workload/w", "group: gw-a, kill: runtime", 21, "unless failover is enabled"},
		{"a workload named like the harness's evidence", "{name: w, type: fetch", "{name: sampler, type: fetch", 18, "taken by the runtime or the harness"},
		{"bad workload type", "type: fetch", "type: mine", 18, "workload type"},
		{"no threshold", "gate: {minDownload: 5mbit}", "gate: {mode: on}", 16, "needs a threshold"},
		{"confirm spread too long", "gate: {minDownload: 5mbit}", "gate: {minDownload: 5mbit, confirmSpread: 2m}", 16, "confirmSpread 2m0s is out of range"},
		{"bad durability", "gate: {minDownload: 5mbit}", "gate: {minDownload: 5mbit}\n    buffer: {durability: tape}", 17, "durability"},
		{"no expectations", "  expect:\n  - {validator: gate-follows-link, group: all, within: 10s}\n", "  expect: []\n", 23, "at least one expectation"},
		{"time scale below 1", "  duration: 5m", "  duration: 5m\n  timeScale: 0.5", 23, "timeScale"},
		{"wrong kind", "kind: Scenario", "kind: Fleet", 2, "expected Scenario"},
		{"a sample workload in the cloud", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: fetch, on: cloud}", 19, "the cloud runs workloads of type command"},
		{"a cloud workload without a command", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud}", 19, "needs a command"},
		{"an image in the cloud", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, image: x/y:1}", 19, "not images"},
		{"ready without a port", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], ready: {tcp: true}}", 19, "give port"},
		{"a port the harness takes", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 8080}", 19, "the cloud's speed-test server"},
		{"a port out of range", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 70000}", 19, "not a TCP port"},
		{"two readiness checks", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 80, ready: {tcp: true, http: /h}}", 19, "one check"},
		{"a readiness path that is not a path", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 80, ready: {http: healthz}}", 19, "not a URL path"},
		{"two workloads on one port", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 9000}\n  - {name: db2, type: command, on: cloud, command: [x], port: 9000}", 20, `cloud already has workload "db" on port 9000`},
		{"a readiness wait too short", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 80, ready: {tcp: true, within: 100ms}}", 19, "between 1s and 5m"},
		{"a group named cloud", "gws: {sites: [s], role: gateway}", "cloud: {sites: [s], role: gateway}", 14, `not "all" or "cloud"`},
		{"a readiness wait too long", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: db, type: command, on: cloud, command: [x], port: 80, ready: {tcp: true, within: 1h}}", 19, "between 1s and 5m"},
		{"port on a sample workload", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s, port: 80}", 18, "for type command"},
		{"a cloud workload named cloud", "{name: w, type: fetch, on: s/a, period: 1s}", "{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: cloud, type: command, on: cloud, command: [x]}", 19, "CLOUD_ADDR"},
		{"the cloud's link impaired", "group: a1, kill: workload/w", "group: cloud, outage: true", 21, "kills or restarts a cloud workload"},
		{"a kill of no cloud workload", "group: a1, kill: workload/w", "group: cloud, kill: workload/w", 21, "name a cloud workload"},
		{"a kill of the runtime in the cloud", "group: a1, kill: workload/w", "group: cloud, kill: runtime", 21, "name a cloud workload"},
		{"repeat without every", "profile: slow, for: 1m}", "profile: slow, for: 1m, repeat: 3}", 20, "needs every"},
		{"every without repeat", "profile: slow, for: 1m}", "profile: slow, for: 1m, every: 2m}", 20, "repeat 0"},
		{"repeat once", "profile: slow, for: 1m}", "profile: slow, for: 1m, repeat: 1, every: 2m}", 20, "2 to 1000"},
		{"flaps that overlap", "profile: slow, for: 1m}", "profile: slow, for: 1m, repeat: 2, every: 1m}", 20, "not longer than for"},
		{"flaps past the end", "profile: slow, for: 1m}", "profile: slow, for: 1m, repeat: 3, every: 2m}", 20, "past the scenario's duration"},
		{"the last flap ends past the end", "profile: slow, for: 1m}", "profile: slow, for: 1m, repeat: 2, every: 3m30s}", 20, "ends past the scenario's duration"},
		{"a repeated impairment without for", "profile: slow, for: 1m}", "profile: slow, repeat: 2, every: 1m}", 20, "needs for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(good, tc.old, tc.new, 1)
			if src == good {
				t.Fatalf("the test's replacement %q does not apply", tc.old)
			}
			_, err := ParseScenario("bad.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			e, ok := err.(*Error)
			if !ok || e.File != "bad.yaml" || e.Line != tc.line || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("got %v (line %d), want bad.yaml:%d ... %s", err, lineOfErr(err), tc.line, tc.want)
			}
		})
	}
}

func lineOfErr(err error) int {
	if e, ok := err.(*Error); ok {
		return e.Line
	}
	return -1
}

func TestScaled(t *testing.T) {
	for _, tc := range []struct {
		d     Duration
		scale float64
		floor time.Duration
		want  time.Duration
	}{
		{Duration(time.Hour), 60, 0, time.Minute},
		{Duration(time.Hour), 1, 0, time.Hour},
		{Duration(2 * time.Second), 60, time.Second, time.Second},
		{Duration(time.Minute), 0, 0, time.Minute},
	} {
		if got := Scaled(tc.d, tc.scale, tc.floor); got != tc.want {
			t.Errorf("Scaled(%v, %v, %v) = %v, want %v", tc.d.D(), tc.scale, tc.floor, got, tc.want)
		}
	}
}

// A cloud workload: parsed, not resolved as a group of nodes, killable by
// a step on the cloud; its address's variable named after it.
func TestCloudWorkload(t *testing.T) {
	src := strings.Replace(good, "{name: w, type: fetch, on: s/a, period: 1s}",
		"{name: w, type: fetch, on: s/a, period: 1s}\n  - {name: ingest-api, type: command, on: cloud, command: [x], port: 8000, ready: {http: /healthz, within: 10s}}", 1)
	src = strings.Replace(src, "group: a1, kill: workload/w", "group: cloud, kill: workload/ingest-api", 1)
	s, err := ParseScenario("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := s.Spec.Workloads[1]
	if !w.OnCloud() || w.Port != 8000 || w.Ready == nil || w.Ready.HTTP != "/healthz" || w.Ready.ReadyWithin() != 10*time.Second {
		t.Errorf("workload = %+v", w)
	}
	if got := EnvName(w.Name); got != "INGEST_API_ADDR" {
		t.Errorf("EnvName = %s", got)
	}
	if got := (Readiness{TCP: true}).ReadyWithin(); got != 30*time.Second {
		t.Errorf("default readiness wait = %v", got)
	}
}

// A repeated step is expanded into its plays, in time order with the
// other steps, each noted with its number.
func TestRepeat(t *testing.T) {
	src := strings.Replace(good, "profile: slow, for: 1m}", "profile: slow, for: 20s, repeat: 3, every: 1m, note: flap}", 1)
	sc, err := ParseScenario("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range sc.Spec.Timeline {
		got = append(got, fmt.Sprintf("%v %s %s", st.At.D(), sc.Spec.Action(st).Kind, st.Note))
	}
	want := []string{"1m0s profile flap (1 of 3)", "2m0s profile flap (2 of 3)", "3m0s profile flap (3 of 3)", "3m0s kill "}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("timeline %q, want %q", got, want)
	}
	if st := sc.Spec.Timeline[1]; st.Repeat != 0 || st.Every != 0 || st.For.D() != 20*time.Second {
		t.Errorf("a play keeps the step but its repeat: %+v", st)
	}
}
