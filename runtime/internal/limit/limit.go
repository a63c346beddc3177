// Package limit bounds what the runtime's servers hold in memory for
// request bodies being read: a request reserves its body's size (its
// Content-Length, or the endpoint's maximum when it gives none) from a
// budget before the body is read, and waits, up to its own deadline, while
// the budget is spent. Small requests flow side by side; large ones take
// turns; a flood of slow or huge bodies cannot take the process past its
// memory limit.
package limit

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

// Bodies is a budget of body bytes in memory.
type Bodies struct {
	sem *semaphore.Weighted
	max int64
}

// NewBodies makes a budget of total bytes for bodies of at most max bytes
// each (max <= total).
func NewBodies(total, max int64) *Bodies {
	return &Bodies{sem: semaphore.NewWeighted(total), max: min(max, total)}
}

// MaxWait bounds how long a request waits for the budget before it is
// told to come back (429).
const MaxWait = 30 * time.Second

// Acquire reserves r's body size; call the release it returns when the
// body is no longer held. It fails when ctx ends or MaxWait passes first.
func (b *Bodies) Acquire(ctx context.Context, r *http.Request) (release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, MaxWait)
	defer cancel()
	n := r.ContentLength
	if n < 0 || n > b.max {
		n = b.max // unknown or over the bound: MaxBytesReader stops it at max
	}
	if n == 0 {
		n = 1
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(n) }, nil
}
