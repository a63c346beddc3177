package trace

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/units"
)

// The figures a drive is made of; docs/scenarios.md cites each.
var (
	// LTE near the mast: 16.6 Mbit/s down (global average [OS]), 9.3 up
	// (US all-mobile median [OKUS]), 31 ms round trip [OKUS].
	cellCentre = impair.Impairment{DownRate: 16600 * units.Kbit, UpRate: 9300 * units.Kbit, Delay: 15500 * time.Microsecond}
	// At the cell edge: Lighthouse's "slow 4G", about the bottom quartile
	// of 4G tests: 1.6 Mbit/s down, 0.75 up, 150 ms [LH].
	cellEdge = impair.Impairment{DownRate: 1600 * units.Kbit, UpRate: 750 * units.Kbit, Delay: 75 * time.Millisecond}
	// Falling back to 3G at a handover: 0.7 Mbit/s, 300 ms [LH].
	fallback3G = impair.Impairment{DownRate: 700 * units.Kbit, UpRate: 700 * units.Kbit, Delay: 150 * time.Millisecond}
)

// Drive is a vehicle's LTE link over length, one row a second: it drives
// through cells of 40 to 90 s, the link at its best halfway through a
// cell and at the cell edge's figures at its borders, and at one handover
// in four it falls back to 3G for 2 to 6 s. seed decides the cells and
// the fallbacks: the same seed, the same drive.
func Drive(seed uint64, length time.Duration) Trace {
	rng := rand.New(rand.NewPCG(seed, 0x6c7465))
	var t Trace
	cellStart, cellLen := 0, 40+rng.IntN(51)
	fallbackUntil := -1
	for s := 0; time.Duration(s)*time.Second < length; s++ {
		if s-cellStart >= cellLen {
			cellStart, cellLen = s, 40+rng.IntN(51)
			if rng.IntN(4) == 0 {
				fallbackUntil = s + 2 + rng.IntN(5)
			}
		}
		imp := fallback3G
		if s >= fallbackUntil {
			// Signal: 0 at the borders, 1 halfway through the cell.
			q := math.Sin(math.Pi * (float64(s-cellStart) + 0.5) / float64(cellLen))
			imp = mix(cellEdge, cellCentre, q)
		}
		_ = imp.Validate() // fills in the direction, as Parse does
		t.Rows = append(t.Rows, Row{At: time.Duration(s) * time.Second, Impairment: imp})
	}
	return t
}

// mix is a between edge (q = 0) and centre (q = 1), rates rounded to
// 10 kbit/s and delay to the millisecond.
func mix(edge, centre impair.Impairment, q float64) impair.Impairment {
	rate := func(a, b units.Rate) units.Rate {
		r := float64(a) + q*(float64(b)-float64(a))
		return units.Rate(math.Round(r/10e3) * 10e3)
	}
	d := float64(edge.Delay) + q*(float64(centre.Delay)-float64(edge.Delay))
	return impair.Impairment{DownRate: rate(edge.DownRate, centre.DownRate), UpRate: rate(edge.UpRate, centre.UpRate), Delay: time.Duration(d).Round(time.Millisecond)}
}

// Format writes t as a trace file, with comment, that Parse reads back as
// the same rows.
func Format(t Trace, comment string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(comment), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "# %s\n", l)
		}
	}
	b.WriteString("time,down,up,delay,loss\n")
	for _, r := range t.Rows {
		i := r.Impairment
		if i.Outage {
			fmt.Fprintf(&b, "%s,cut,cut,,\n", secs(r.At))
			continue
		}
		down, up := i.RateOf(impair.Ingress), i.RateOf(impair.Egress)
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", secs(r.At), rateField(down), rateField(up), durField(i.Delay), lossField(i.Loss))
	}
	return b.String()
}

func secs(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

func rateField(r units.Rate) string {
	if r == 0 {
		return ""
	}
	return r.String()
}

func durField(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func lossField(l float64) string {
	if l == 0 {
		return ""
	}
	return fmt.Sprintf("%g%%", l)
}

// DriveFile is Drive's trace file, with a comment saying how it was made
// and from what (what `edgefault trace generate lte-drive` prints).
func DriveFile(seed uint64, length time.Duration) string {
	return Format(Drive(seed, length), fmt.Sprintf(`An LTE link from a moving vehicle: edgefault trace generate lte-drive --seed %d --length %v
Cells of 40-90 s; halfway through a cell LTE at 16.6 Mbit/s down [OS], 9.3 up [OKUS], 31 ms round trip [OKUS];
at its borders Lighthouse's slow 4G, 1.6 down, 0.75 up, 150 ms [LH]; one handover in four falls back to 3G
for 2-6 s, 0.7 Mbit/s, 300 ms [LH]. Delay is one way (half the round trip). Sources: docs/scenarios.md.`, seed, length))
}
