package units

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  string
	}{
		{in: "5mbit", want: 5 * Mbit},
		{in: "5Mbit", want: 5 * Mbit},
		{in: "5MBIT", want: 5 * Mbit},
		{in: "512kbit", want: 512 * Kbit},
		{in: "1gbit", want: Gbit},
		{in: "1500bit", want: 1500},
		{in: "2.5mbit", want: 2500 * Kbit},
		{in: "2MB/s", want: 16 * Mbit},
		{in: "500kB/s", want: 4 * Mbit},
		{in: "5mbps", err: "write 5mbit"},
		{in: "5Mbps", err: "write 5mbit"},
		{in: "5kbps", err: "write 5kbit"},
		{in: "5Mb/s", err: "write 5mbit"},
		{in: "5kb/s", err: "write 5kbit"},
		{in: "5mb/s", err: "ambiguous"},
		{in: "2mB/s", err: "exactly kB/s or MB/s"},
		{in: "2KB/s", err: "exactly kB/s or MB/s"},
		{in: "5mbps?", err: "unknown unit"},
		{in: "5", err: "no unit"},
		{in: "-5mbit", err: "negative"},
		{in: "mbit", err: "does not start with a number"},
		{in: "", err: "empty"},
		{in: "0mbit", err: "out of range"},
		{in: "1.2.3mbit", err: "bad number"},
	} {
		got, err := ParseRate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRate(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestRateString(t *testing.T) {
	for r, want := range map[Rate]string{5 * Mbit: "5mbit", 512 * Kbit: "512kbit", 1500: "1500bit", Gbit: "1gbit"} {
		if got := r.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint64(r), got, want)
		}
	}
}

func TestParsePercent(t *testing.T) {
	for in, want := range map[string]float64{"2%": 2, "0.5%": 0.5, "100%": 100, "0%": 0, " 25% ": 25} {
		if got, err := ParsePercent(in); err != nil || got != want {
			t.Errorf("ParsePercent(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"101%", "-1%", "x", "", "NaN", "NaN%", "2", "0.5", "%"} {
		if _, err := ParsePercent(in); err == nil {
			t.Errorf("ParsePercent(%q) accepted", in)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "64kB", want: 64000},
		{in: "1MiB", want: 1 << 20},
		{in: "0B", want: 0},
		{in: "1.5MB", want: 1500000},
		{in: "-1kB", err: "negative"},
		{in: "64", err: "no unit"},
		{in: "64kb", err: "unknown unit"},
		{in: "lots", err: "not a size"},
	} {
		got, err := ParseSize("probe", tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "probe") {
				t.Errorf("ParseSize(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
