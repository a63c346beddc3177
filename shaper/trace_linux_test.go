package shaper_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/shaper/trace"
)

// A trace played twice with the same seed on the same traffic delivers the
// same bytes each second, within what the moment each row lands on the
// link moves (measured here: how long after its time each row is in
// force). A numbered UDP train below every row's rate crosses rows of
// loss, a cut and a delay change; each second's bytes are counted by when
// they were sent. The second after the cut delivers less than its 25%
// loss lets through (about 37% here): the sender kept sending through
// the cut, its neighbour resolution failed meanwhile and is retried on
// its own timer, as after a real cable pull.
func TestTraceReplays(t *testing.T) {
	star := traffic.StarT(t, 2)
	sh, _ := newShaper(t)
	ctx := context.Background()
	tg := target(star, 0)
	tr, err := trace.Parse("replay.csv", strings.NewReader(`time,down,up,delay,loss
0s,8mbit,8mbit,,5%
1s,2mbit,2mbit,20ms,
2s,cut,cut,,
3s,4mbit,4mbit,5ms,25%
4s,8mbit,8mbit,,
`))
	if err != nil {
		t.Fatal(err)
	}
	const pps, size, secs = 400, 200, 5
	play := func(seed uint64) []int {
		t.Helper()
		// The train and the trace start together, once the train's
		// sockets are surely ready.
		start := time.Now().Add(time.Second)
		errc := make(chan error, 1)
		var lates []time.Duration
		go func() {
			_, err := tr.Play(ctx, start, 1, 0, func(ctx context.Context, _ int, imp impair.Impairment, late time.Duration) error {
				t0 := time.Now()
				imp.Seed = seed
				err := sh.Apply(ctx, tg, imp)
				// In force this long after its time: the trace's resolution.
				lates = append(lates, (late + time.Since(t0)).Round(100*time.Microsecond))
				return err
			})
			errc <- err
		}()
		got, err := traffic.UDPTrainAt(ctx, star.Hosts[0], star.Hosts[1], star.Addr(1)+":0", start, pps*secs, size, pps)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if err := sh.Clear(ctx, tg); err != nil {
			t.Fatal(err)
		}
		per := make([]int, secs)
		for seq := range got {
			if s := int(seq) / pps; s < secs {
				per[s] += size
			}
		}
		t.Logf("seed %d: bytes each second %v (each row in force %v after its time)", seed, per, lates)
		for i, l := range lates {
			if l > 300*time.Millisecond {
				t.Errorf("row %d was in force %v after its time, want within 300ms", i, l)
			}
		}
		return per
	}
	a, again, other := play(42), play(42), play(43)
	// The cut second passes nothing; the rows without loss all of it,
	// but what a row's lag moves across its border.
	sent := pps * size
	for _, p := range [][]int{a, again, other} {
		if p[2] > sent/5 {
			t.Errorf("the cut second delivered %d bytes, want almost none", p[2])
		}
		if p[4] < sent*9/10 {
			t.Errorf("the last, lossless second delivered %d of %d bytes", p[4], sent)
		}
	}
	// The same seed: the same bytes each second, within 5% of what was
	// sent in it (the rows' lag, a few packets at each border).
	for s := range secs {
		if d := abs(a[s] - again[s]); d > sent/20 {
			t.Errorf("second %d: %d and %d bytes with the same seed, %d apart (want within %d)", s, a[s], again[s], d, sent/20)
		}
	}
	if a[3] == other[3] && a[0] == other[0] {
		t.Errorf("seeds 42 and 43 delivered the same bytes in both lossy seconds (%d, %d): the seed decides nothing", a[0], a[3])
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
