package harness_test

import (
	"testing"
	"time"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
)

// The dry run's plan of the built-in vehicle: its topology's own links at
// 0 and each timeline step on its members, with the cloud never listed.
func TestPlanListsWhatAScenarioDoesToWhom(t *testing.T) {
	sc, err := scenarios.Builtin("vehicle")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := harness.Plan(sc)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		at, hold time.Duration
		member   string
		kind     string
	}{
		{0, 0, "truck-modem", "link"},
		{20 * time.Minute, 0, "truck-modem", "profile"},
		{40 * time.Minute, time.Hour, "truck-modem", "outage"},
		{70 * time.Minute, 0, "truck-ecu", "kill"},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(steps), len(want), steps)
	}
	for i, w := range want {
		s := steps[i]
		if s.At != w.at || s.For != w.hold || s.Member != w.member || s.Kind != w.kind || s.What == "" {
			t.Errorf("step %d: %+v, want at %v for %v on %s (%s)", i, s, w.at, w.hold, w.member, w.kind)
		}
	}
}
