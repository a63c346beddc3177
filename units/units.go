// Package units parses and formats the quantities users type: rates with an
// explicit unit ("5mbit", "2MB/s"), percentages ("2%") and durations. Both
// binaries share it so a rate means the same thing to the shaper and to the
// runtime's thresholds.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a data rate in bits per second.
type Rate uint64

// Common rates.
const (
	Bit  Rate = 1
	Kbit Rate = 1000
	Mbit Rate = 1000 * Kbit
	Gbit Rate = 1000 * Mbit
)

// BytesPerSecond is the rate in bytes per second, rounded down.
func (r Rate) BytesPerSecond() uint64 { return uint64(r) / 8 }

// String formats r with the largest exact bit unit (5mbit, 512kbit, 1500bit).
func (r Rate) String() string {
	switch {
	case r == 0:
		return "0bit"
	case r%Gbit == 0:
		return fmt.Sprintf("%dgbit", r/Gbit)
	case r%Mbit == 0:
		return fmt.Sprintf("%dmbit", r/Mbit)
	case r%Kbit == 0:
		return fmt.Sprintf("%dkbit", r/Kbit)
	}
	return fmt.Sprintf("%dbit", uint64(r))
}

// Ambiguous spellings that are refused, with the unit the user most likely
// meant. tc reads "mbps" as megabytes per second while people mean megabits,
// so a rate in them is a factor-of-eight accident waiting to happen.
var refusedUnits = map[string]string{
	"bps": "bit", "kbps": "kbit", "mbps": "mbit", "gbps": "gbit",
	"b/s": "bit", "kb/s": "kbit", "mb/s": "mbit", "gb/s": "gbit",
	"k": "kbit", "m": "mbit", "g": "gbit", "b": "bit",
	"kb": "kbit", "mb": "mbit", "gb": "gbit",
	"kib/s": "kB/s", "mib/s": "MB/s", "bytes": "kB/s",
}

// ParseRate parses a rate with an explicit unit. Bits: "bit", "kbit",
// "mbit", "gbit" in any case ("5mbit", "5Mbit"). Bytes: only "kB/s" and
// "MB/s", spelled exactly so. Everything else — "mbps", "Mb/s", "kb/s", a bare
// number — is refused with a suggestion. Decimal prefixes: 1kbit = 1000 bit/s.
func ParseRate(s string) (Rate, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty rate: give a number and a unit, e.g. 5mbit")
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	if strings.HasPrefix(in, "-") {
		return 0, fmt.Errorf("rate %q is negative: a rate is at least 1bit", s)
	}
	if num == "" {
		return 0, fmt.Errorf("rate %q does not start with a number: write e.g. 5mbit", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: bad number %q", s, num)
	}
	if unit == "" {
		return 0, fmt.Errorf("rate %q has no unit: write %sbit, %skbit or %smbit (bits/s), or %skB/s (bytes/s)", s, num, num, num, num)
	}
	var mult float64
	switch {
	case unit == "kB/s":
		mult = 8 * 1000
	case unit == "MB/s":
		mult = 8 * 1000 * 1000
	default:
		switch strings.ToLower(unit) {
		case "bit":
			mult = 1
		case "kbit":
			mult = 1e3
		case "mbit":
			mult = 1e6
		case "gbit":
			mult = 1e9
		}
	}
	if mult == 0 {
		if strings.HasSuffix(unit, "B/s") && (strings.EqualFold(unit, "kB/s") || strings.EqualFold(unit, "MB/s")) {
			return 0, fmt.Errorf("rate %q: unit %q is misspelled: bytes per second are written exactly kB/s or MB/s; for bits write %skbit or %smbit", s, unit, num, num)
		}
		if hint, ok := refusedUnits[strings.ToLower(unit)]; ok {
			return 0, fmt.Errorf("rate %q: unit %q is ambiguous: tools disagree on whether it means bits or bytes (tc reads mbps as megabytes/s, people mean megabits/s): write %s%s", s, unit, num, hint)
		}
		return 0, fmt.Errorf("rate %q: unknown unit %q: use bit, kbit, mbit, gbit (bits/s) or kB/s, MB/s (bytes/s)", s, unit)
	}
	bits := v * mult
	if bits < 1 || math.IsInf(bits, 0) || bits > 1e12 {
		return 0, fmt.Errorf("rate %q is out of range: use 1bit to 1000gbit", s)
	}
	return Rate(math.Round(bits)), nil
}

// ParsePercent parses a loss percentage such as "2%" or "0.5%", in [0, 100].
// The % is required: a bare "2" could mean 2% or a fraction of 2.
func ParsePercent(s string) (float64, error) { return Percent("loss", s) }

// Percent parses a percentage in [0, 100] for the named field; the % sign
// is required.
func Percent(field, s string) (float64, error) {
	t := strings.TrimSpace(s)
	if !strings.HasSuffix(t, "%") {
		if _, err := strconv.ParseFloat(t, 64); err == nil {
			return 0, fmt.Errorf("%s %q has no %% sign: write %s%% for a percentage", field, s, t)
		}
		return 0, fmt.Errorf("%s %q is not a percentage: write e.g. 2%%", field, s)
	}
	in := strings.TrimSuffix(t, "%")
	v, err := strconv.ParseFloat(in, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("%s %q is not a percentage: write e.g. 2%%", field, s)
	}
	if v < 0 || v > 100 {
		return 0, fmt.Errorf("%s %q is out of range: it must be between 0%% and 100%%", field, s)
	}
	return v, nil
}

// ParseDuration parses a non-negative Go duration ("200ms", "1.5s") for
// the named field.
func ParseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a duration: write e.g. 200ms or 1s", field, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s %q is negative", field, s)
	}
	return d, nil
}

// ParseSize parses a byte count with an explicit unit: B, kB, MB, GB
// (decimal) or KiB, MiB, GiB (binary), spelled exactly so; "0B" is allowed.
func ParseSize(field, s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	if strings.HasPrefix(in, "-") {
		return 0, fmt.Errorf("%s %q is negative: a size is at least 0B", field, s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil {
		return 0, fmt.Errorf("%s %q is not a size: write e.g. 64kB or 1MiB", field, s)
	}
	mult := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		if unit == "" {
			return 0, fmt.Errorf("%s %q has no unit: write %sB, %skB or %sMiB", field, s, num, num, num)
		}
		return 0, fmt.Errorf("%s %q: unknown unit %q: use B, kB, MB, GB or KiB, MiB, GiB", field, s, unit)
	}
	b := v * mult
	if b > 1<<50 {
		return 0, fmt.Errorf("%s %q is out of range", field, s)
	}
	return int64(math.Round(b)), nil
}
