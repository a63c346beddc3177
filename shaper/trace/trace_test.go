package trace

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/units"
)

func TestParse(t *testing.T) {
	got, err := Parse("drive.csv", strings.NewReader("# a comment\ntime,down,up,delay,loss\n0s,16mbit,9mbit,30ms,0%\n1.5,1600kbit,750kbit,75ms,0.5%\n3s,cut,,,\n4s,,,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{0, impair.Impairment{DownRate: 16 * units.Mbit, UpRate: 9 * units.Mbit, Delay: 30 * time.Millisecond, Direction: impair.Both}},
		{1500 * time.Millisecond, impair.Impairment{DownRate: 1600 * units.Kbit, UpRate: 750 * units.Kbit, Delay: 75 * time.Millisecond, Loss: 0.5, Direction: impair.Both}},
		{3 * time.Second, impair.Impairment{Outage: true, Direction: impair.Both}},
		{4 * time.Second, impair.Impairment{Direction: impair.Both}},
	}
	if !reflect.DeepEqual(got.Rows, want) {
		t.Fatalf("rows\n%+v\nwant\n%+v", got.Rows, want)
	}
	if got.Duration() != 4*time.Second {
		t.Errorf("duration %v, want 4s", got.Duration())
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "t.csv: empty trace"},
		{"time,down,speed\n", `t.csv:1: column "speed"`},
		{"down,up\n", "t.csv:1: no time column"},
		{"time,down\n", "t.csv: no rows"},
		{"time,down\n1s,5mbit\n", "t.csv:2: the first row is at 1s"},
		{"time,down\n0s,5mbit\n0.05s,4mbit\n", "t.csv:3: row at 50ms is 50ms after the one before: rows are at least 100ms apart"},
		{"time,down\n0s,5mbit\n0s,4mbit\n", "t.csv:3: row at 0s is 0s after"},
		{"time,down\n0s,5mbps?\n", "t.csv:2: down: rate \"5mbps?\""},
		{"time,delay\n0s,2h\n", "t.csv:2: delay 2h0m0s is longer than a minute"},
		{"time,loss\n0s,101%\n", "t.csv:2:"},
		{"time,down\nsoon,5mbit\n", `t.csv:2: time "soon"`},
		{"time,down\n0s,5mbit,extra\n", "t.csv:2:"},
		{"time,down\n0\"s,5mbit\n", "t.csv:2:"},
		{"time,down\n\"0s,5mbit\n", "t.csv:"},
	} {
		_, err := Parse("t.csv", strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

// The drive is made from its seed alone, stays within the sourced
// figures, and reads back from its file as the same rows.
func TestDrive(t *testing.T) {
	a, b, c := Drive(1, 10*time.Minute), Drive(1, 10*time.Minute), Drive(2, 10*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed made two drives")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 1 and 2 made the same drive")
	}
	if len(a.Rows) != 600 {
		t.Fatalf("%d rows, want 600 (one a second)", len(a.Rows))
	}
	fallbacks := 0
	for _, r := range a.Rows {
		d := r.Impairment.RateOf(impair.Ingress)
		if d < fallback3G.DownRate || d > cellCentre.DownRate {
			t.Fatalf("row at %v: down %v outside 0.7-16.6 Mbit/s", r.At, d)
		}
		if d == fallback3G.DownRate {
			fallbacks++
		}
	}
	if fallbacks == 0 {
		t.Error("ten minutes without a fallback to 3G")
	}
	back, err := Parse("drive.csv", strings.NewReader(Format(a, "a drive\nseed 1")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Rows, a.Rows) {
		t.Fatal("the drive read back from its file differs")
	}
}

func TestPlay(t *testing.T) {
	tr := Trace{Rows: []Row{{0, impair.Impairment{Delay: time.Millisecond}}, {200 * time.Millisecond, impair.Impairment{Delay: 2 * time.Millisecond}}}}
	for _, tc := range []struct {
		name   string
		length time.Duration
		want   []int
	}{
		{"once", 0, []int{0, 1}},
		// A loop is 400 ms (the last row holds for the spacing before it).
		{"looping for 1s", time.Second, []int{0, 1, 0, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			start := time.Now()
			skipped, err := tr.Play(context.Background(), start, 2, tc.length, func(_ context.Context, i int, _ impair.Impairment, late time.Duration) error {
				got = append(got, i)
				if late > 300*time.Millisecond {
					t.Errorf("row %d came %v late", i, late)
				}
				return nil
			})
			if err != nil || skipped != 0 || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("played %v (%d skipped, %v), want %v", got, skipped, err, tc.want)
			}
			// At time scale 2 the last row is due at half its time: 100 ms
			// once, 400 ms looping (its time 800 ms).
			last := map[string]time.Duration{"once": 100 * time.Millisecond, "looping for 1s": 400 * time.Millisecond}[tc.name]
			if el := time.Since(start); el < last || el > last+350*time.Millisecond {
				t.Errorf("played in %v, want about %v at time scale 2", el, last)
			}
		})
	}
}

// A player that falls behind skips to the row that is due, rather than
// replaying the trace late.
func TestPlayCatchesUp(t *testing.T) {
	tr := Trace{Rows: []Row{{0, impair.Impairment{}}, {100 * time.Millisecond, impair.Impairment{}}, {200 * time.Millisecond, impair.Impairment{}}, {time.Second, impair.Impairment{}}}}
	var got []int
	// Started 250 ms ago: rows 0 and 1 are past their successors' times.
	skipped, err := tr.Play(context.Background(), time.Now().Add(-250*time.Millisecond), 1, 0, func(_ context.Context, i int, _ impair.Impairment, _ time.Duration) error {
		got = append(got, i)
		return nil
	})
	if err != nil || skipped != 2 || !reflect.DeepEqual(got, []int{2, 3}) {
		t.Fatalf("played %v, %d skipped (%v); want [2 3], 2 skipped", got, skipped, err)
	}
}
