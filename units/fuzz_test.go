package units

import "testing"

// Whatever a user types, ParseRate answers without panicking, and a rate it
// accepts prints as something it parses back to the same rate.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"5mbit", "512kbit", "1gbit", "1500bit", "2MB/s", "3kB/s", "5mbps?", "0.5mbit", "1e9bit", "-1mbit", "", "  7Mbit "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseRate(%q): an empty error", s)
			}
			return
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %v, which parses back as %v (%v)", s, r, back, err)
		}
	})
}

// Percentages and sizes, the same.
func FuzzParsePercentAndSize(f *testing.F) {
	for _, s := range []string{"2%", "0.5%", "100%", "101%", "2", "256MB", "1GiB", "-1MB", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := Percent("loss", s); err == nil && (p < 0 || p > 100) {
			t.Fatalf("Percent(%q) = %v: outside 0-100", s, p)
		}
		if n, err := ParseSize("size", s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
