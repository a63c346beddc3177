package shaper_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
)

// BenchmarkApplyClear is one rate limit applied and cleared through the
// shaper, ledger and state included (make bench compares it with tc).
func BenchmarkApplyClear(b *testing.B) {
	s := traffic.StarT(b, 1)
	// The ledger lives on /run (tmpfs) in real use.
	dir, err := os.MkdirTemp("/run", "edgefault-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	sh, err := shaper.New(shaper.WithLedger(l, "bench"), shaper.WithStateDir(filepath.Join(dir, "state")))
	if err != nil {
		b.Fatal(err)
	}
	t := target(s, 0)
	imp := shaper.Impairment{Rate: 5 * shaper.Mbit, Direction: shaper.Ingress}
	ctx := context.Background()
	for b.Loop() {
		if err := sh.Apply(ctx, t, imp); err != nil {
			b.Fatal(err)
		}
		if err := sh.Clear(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
}
