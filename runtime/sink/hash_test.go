package sink

import (
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
)

// A key stored by an earlier sink (legacy hash, or none) still makes a
// resend of the same record a duplicate, and other content a conflict.
func TestSameContentAcrossHashVersions(t *testing.T) {
	rec := &record.Record{Time: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Payload: []byte("sale")}
	other := &record.Record{Time: rec.Time, Payload: []byte("forged")}
	ts := u64(1)
	sum, legacy := record.Sum(rec), legacyHash(rec)
	current := append(append(append([]byte(nil), ts...), sum[:]...), hashVersion)
	old := append(append([]byte(nil), ts...), legacy[:]...)
	for _, tc := range []struct {
		name string
		prev []byte
		rec  *record.Record
		want bool
	}{
		{"current, same", current, rec, true},
		{"current, other", current, other, false},
		{"legacy, same", old, rec, true},
		{"legacy, other", old, other, false},
		{"no hash kept", ts, other, true},
	} {
		if got := sameContent(tc.prev, tc.rec, record.Sum(tc.rec)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
