package scenarios

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgefault/edgefault/units"
	"gopkg.in/yaml.v3"
)

// One rate for both directions, or each its own; what a scenario says
// comes back the same through YAML and JSON (provider state files).
func TestLinkRate(t *testing.T) {
	for _, tc := range []struct {
		yaml       string
		down, up   units.Rate
		both       units.Rate
		text, back string
	}{
		{"{rate: 5mbit}", 0, 0, 5 * units.Mbit, "5mbit", "rate: 5mbit"},
		{"{rate: {down: 20mbit, up: 3mbit}}", 20 * units.Mbit, 3 * units.Mbit, 0, "20mbit down / 3mbit up", "rate:\n    down: 20mbit\n    up: 3mbit"},
		{"{rate: {up: 1mbit}}", 0, units.Mbit, 0, "1mbit up", "rate:\n    up: 1mbit"},
		{"{rate: {down: 2mbit, up: 2mbit}}", 0, 0, 2 * units.Mbit, "2mbit", "rate: 2mbit"},
	} {
		var p LinkProfile
		if err := yaml.Unmarshal([]byte(tc.yaml), &p); err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		imp, err := p.Impairment("profiles.x")
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if imp.DownRate != tc.down || imp.UpRate != tc.up || imp.Rate != tc.both {
			t.Errorf("%s: rate %v, down %v, up %v; want %v, %v, %v", tc.yaml, imp.Rate, imp.DownRate, imp.UpRate, tc.both, tc.down, tc.up)
		}
		if p.Rate.String() != tc.text {
			t.Errorf("%s: String = %q, want %q", tc.yaml, p.Rate.String(), tc.text)
		}
		out, _ := yaml.Marshal(p)
		if !strings.Contains(string(out), tc.back) {
			t.Errorf("%s: marshalled as %q, want %q in it", tc.yaml, out, tc.back)
		}
		js, _ := json.Marshal(p)
		var again LinkProfile
		if err := json.Unmarshal(js, &again); err != nil || again != p {
			t.Errorf("%s: JSON %s came back as %+v (%v)", tc.yaml, js, again, err)
		}
	}
	// A state file written before rates were split.
	var old LinkProfile
	if err := json.Unmarshal([]byte(`{"Rate":"4mbit","Delay":"10ms"}`), &old); err != nil || old.Rate != SameRate("4mbit") {
		t.Errorf("old state: %+v, %v", old, err)
	}
}
