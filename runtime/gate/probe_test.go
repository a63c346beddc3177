package gate

import (
	"math"
	"testing"
	"time"
)

func TestTailRate(t *testing.T) {
	t0 := time.Unix(0, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name  string
		bytes []int64
		at    []time.Time
		full  []bool
		want  float64 // bits/s
	}{
		// Slow start: a long wait for the first half, then the second half
		// at 10 Mbit/s (125 kB in 100 ms). Only the second half counts.
		{"slow start ignored", []int64{10000, 30000, 125000, 187500, 250000}, []time.Time{ms(50), ms(150), ms(300), ms(350), ms(400)}, []bool{false, false, false, false, false}, 125000 * 8 / 0.1},
		{"steady", []int64{100, 200, 300, 400}, []time.Time{ms(1), ms(2), ms(3), ms(4)}, []bool{false, false, false, false}, 200 * 8 / 0.002},
		// A reader that fell behind catches up in full reads at the half:
		// those bytes arrived earlier, so the tail is timed from the last
		// read that found it caught up (40 kB at 110 ms): 60 kB in 40 ms,
		// not 44 kB in 10 ms.
		{"catch-up burst not credited", []int64{20000, 40000, 56000, 72000, 100000}, []time.Time{ms(100), ms(110), ms(140), ms(140), ms(150)}, []bool{false, false, true, true, false}, 60000 * 8 / 0.04},
		{"half in the last read", []int64{1000, 100000}, []time.Time{ms(10), ms(20)}, []bool{false, false}, 99000 * 8 / 0.01},
		{"nothing", nil, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := arrivals{bytes: tc.bytes, at: tc.at, full: tc.full}
			if got := a.tailRate(); math.Abs(got-tc.want) > tc.want*1e-9 {
				t.Fatalf("tailRate = %.0f, want %.0f", got, tc.want)
			}
		})
	}
}
