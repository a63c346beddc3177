package harness

import (
	"testing"
	"time"
)

// The kernel's give-up times shrink with the time scale, never below what
// the scaled scenario needs.
func TestTCPRetriesScale(t *testing.T) {
	for _, tc := range []struct {
		scale     float64
		retries2  int
		synRetrie int
	}{
		{1, 15, 6},
		{60, 6, 1},
		{120, 5, 1},
		{8, 9, 4},
	} {
		d2 := time.Duration(float64(924*time.Second) / tc.scale)
		if got := tcpRetriesFor(d2); got != tc.retries2 {
			t.Errorf("scale %v: tcpRetriesFor(%v) = %d, want %d", tc.scale, d2, got, tc.retries2)
		}
		ds := time.Duration(float64(127*time.Second) / tc.scale)
		if got := tcpSynRetriesFor(ds); got != tc.synRetrie {
			t.Errorf("scale %v: tcpSynRetriesFor(%v) = %d, want %d", tc.scale, ds, got, tc.synRetrie)
		}
	}
}
