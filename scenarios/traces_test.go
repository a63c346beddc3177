package scenarios

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/shaper/trace"
)

// The built-in traces are what the project's generator makes from its
// sourced figures, not hand-edited files.
func TestBuiltinTracesAreGenerated(t *testing.T) {
	b, err := BuiltinTrace("lte-drive")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != trace.DriveFile(1, 10*time.Minute) {
		t.Fatal("builtin/traces/lte-drive.csv differs from edgefault trace generate lte-drive --seed 1 --length 10m: regenerate it")
	}
}

// A timeline plays a built-in trace or one of the scenario's own files,
// read relative to the scenario; what is wrong is said with file and line.
func TestTraceSteps(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mine.csv"), []byte("time,down,up\n0s,5mbit,1mbit\n10s,cut,cut\n20s,5mbit,1mbit\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.csv"), []byte("time,down\n0s,5mbps?\n"), 0o644)
	step := "profile: slow, for: 1m}"
	for _, tc := range []struct {
		name, traces, step, want string
		scale                    float64
	}{
		{"built-in", "", "trace: lte-drive, for: 1m}", "", 1},
		{"own file", "  traces:\n    mine: {file: mine.csv}\n", "trace: mine}", "", 1},
		{"own file looping", "  traces:\n    mine: {file: mine.csv}\n", "trace: mine, for: 1m}", "", 4},
		{"unknown", "", "trace: nope}", `t.yaml:21: spec.timeline[0].trace: no built-in trace "nope"`, 1},
		{"missing file", "  traces:\n    gone: {file: gone.csv}\n", "trace: gone}", "spec.traces.gone.file: trace \"gone\": open", 1},
		{"bad file", "  traces:\n    bad: {file: bad.csv}\n", "trace: bad}", `spec.traces.bad.file: bad.csv:2: down: rate "5mbps?"`, 1},
		{"no file", "  traces:\n    bad: {}\n", "trace: bad}", "trace \"bad\" needs a file", 1},
		{"two kinds", "", "trace: lte-drive, outage: true}", "a step does exactly one thing", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(good, step, tc.step, 1)
			src = strings.Replace(src, "  groups:\n", tc.traces+"  groups:\n", 1)
			src = strings.Replace(src, "spec:\n", fmt.Sprintf("spec:\n  timeScale: %g\n", tc.scale), 1)
			sc, err := ParseScenario(filepath.Join(dir, "t.yaml"), []byte(src))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// One row a second at time scale 20 is 50 ms apart: faster than
			// a link follows; run and scenario check refuse it (the loader
			// does not: --time-scale may slow it).
			if err := sc.Spec.CheckTraceScale(20); tc.traces == "" && (err == nil || !strings.Contains(err.Error(), "trace lte-drive has rows 1s apart: at time scale 20 that is 50ms, closer than the 250ms a link can follow; play it at time scale 4 or lower")) {
				t.Errorf("at time scale 20: %v", err)
			}
			if err := sc.Spec.CheckTraceScale(4); err != nil {
				t.Errorf("at time scale 4: %v", err)
			}
			a := sc.Spec.Action(sc.Spec.Timeline[0])
			if a.Kind != "trace" || a.Trace == nil || len(a.Trace.Rows) < 2 || !a.Impairs || !reflect.DeepEqual(a.Impairment, a.Trace.Rows[0].Impairment) {
				t.Fatalf("action %+v", a)
			}
		})
	}
}

// diskFull names nodes (they keep the buffer), and may be restored by for.
func TestDiskFullSteps(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{"diskFull: true, for: 1m}", ""},
		{"diskFull: true}", ""},
		{"diskFull: true, outage: true}", "a step does exactly one thing"},
	} {
		src := strings.Replace(good, "group: gws, profile: slow, for: 1m}", "group: a1, "+tc.step, 1)
		_, err := ParseScenario("t.yaml", []byte(src))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.step, err, tc.want)
		}
	}
	src := strings.Replace(good, "profile: slow, for: 1m}", "diskFull: true}", 1)
	if _, err := ParseScenario("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "t.yaml:20: spec.timeline[0].group: diskFull on gw-a: only nodes keep a buffer") {
		t.Errorf("diskFull on gateways: %v", err)
	}
}

// powerLoss names nodes, and for is how long their power stays off.
func TestPowerLossSteps(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{"group: a1, powerLoss: true, for: 20s}", ""},
		{"group: a1, powerLoss: true}", ""},
		{"group: a1, powerLoss: true, kill: runtime}", "a step does exactly one thing"},
		{"group: gws, powerLoss: true}", "t.yaml:20: spec.timeline[0].group: powerLoss on gw-a: only nodes"},
	} {
		src := strings.Replace(good, "group: gws, profile: slow, for: 1m}", tc.step, 1)
		sc, err := ParseScenario("t.yaml", []byte(src))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.step, err, tc.want)
		}
		if err == nil {
			if a := sc.Spec.Action(sc.Spec.Timeline[0]); a.Kind != "powerLoss" || !a.Power || a.Impairs {
				t.Errorf("%s: action %+v", tc.step, a)
			}
		}
	}
}

// dns names gateways, fails or delays (not both), and for restores it.
func TestDNSSteps(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{"group: gws, dns: {fail: true}, for: 1m}", ""},
		{"group: gws, dns: {delay: 5s}, for: 1m}", ""},
		{"group: gws, dns: {fail: true, delay: 5s}}", "t.yaml:20: spec.timeline[0].dns: dns: give fail: true or a delay, not both"},
		{"group: gws, dns: {}}", "give fail: true (every lookup fails) or a delay"},
		{"group: gws, dns: {delay: 1h}}", "spec.timeline[0].dns.delay: dns delay 1h0m0s is out of range"},
		{"group: gws, dns: {fail: yes-please}}", "t.yaml:20"},
		{"group: a1, dns: {fail: true}}", "dns on a1: a site's lookups leave through its gateway"},
		{"group: gws, dns: {fail: true}, outage: true}", "a step does exactly one thing"},
	} {
		src := strings.Replace(good, "group: gws, profile: slow, for: 1m}", tc.step, 1)
		sc, err := ParseScenario("t.yaml", []byte(src))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.step, err, tc.want)
		}
		if err == nil {
			if a := sc.Spec.Action(sc.Spec.Timeline[0]); a.Kind != "dns" || a.DNS == nil || a.Impairs {
				t.Errorf("%s: action %+v", tc.step, a)
			}
		}
	}
}

// newAddress names gateways (an uplink's address is its gateway's) and
// happens at once (no for).
func TestNewAddressSteps(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{"group: gws, newAddress: true}", ""},
		{"group: gws, newAddress: true, for: 1m}", "for applies to impairments"},
		{"group: a1, newAddress: true}", "newAddress on a1: an uplink's address is its gateway's"},
	} {
		src := strings.Replace(good, "group: gws, profile: slow, for: 1m}", tc.step, 1)
		sc, err := ParseScenario("t.yaml", []byte(src))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.step, err, tc.want)
		}
		if err == nil {
			if a := sc.Spec.Action(sc.Spec.Timeline[0]); a.Kind != "newAddress" || !a.Readdress {
				t.Errorf("%s: action %+v", tc.step, a)
			}
		}
	}
}
