package scenarios

import (
	"testing"
)

// Every kind of step says, in its Action, what the harness does with it.
func TestStepActions(t *testing.T) {
	sc, err := Builtin("vehicle")
	if err != nil {
		t.Fatal(err)
	}
	sp := &sc.Spec
	for _, tc := range []struct {
		step     Step
		kind     string
		impairs  bool
		process  string
		graceful bool
		what     string
	}{
		{Step{Profile: "geo-satellite"}, "profile", true, "", false, "geo-satellite (rate 20mbit down / 3mbit up"},
		{Step{Link: &LinkProfile{Rate: SameRate("1mbit"), Delay: "50ms"}}, "link", true, "", false, "rate 1mbit"},
		{Step{Outage: true}, "outage", true, "", false, "outage"},
		{Step{Restore: true}, "restore", false, "", false, "restore"},
		{Step{Kill: "runtime"}, "kill", false, "runtime", false, "kill runtime"},
		{Step{Restart: "workload/maps"}, "restart", false, "workload/maps", true, "restart workload/maps"},
		{Step{DiskFull: true}, "diskFull", false, "", false, "disk full"},
		{Step{PowerLoss: true}, "powerLoss", false, "", false, "power loss"},
	} {
		a := sp.Action(tc.step)
		if a.Kind != tc.kind || a.Impairs != tc.impairs || a.Process != tc.process || a.Graceful != tc.graceful || len(a.What) < len(tc.what) || a.What[:len(tc.what)] != tc.what {
			t.Errorf("%+v: got %+v", tc.step, a)
		}
		if tc.kind == "outage" && !a.Impairment.Outage {
			t.Errorf("an outage step does not cut the link: %+v", a)
		}
	}
	if a := sp.Action(Step{Outage: true, Kill: "runtime"}); a.Kind != "" {
		t.Errorf("a step of two kinds played as %q", a.Kind)
	}
}
