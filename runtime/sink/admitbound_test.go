package sink

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgefault/edgefault/units"
	"github.com/prometheus/client_golang/prometheus"
)

// Many handlers at once, batches of every size (some larger than the
// burst, some refused, some given up by their forwarder while queued, in
// the middle of the queue): what the bound let in, by the parts' due
// times, never passes the rate and one burst in any window, and a bucket
// replayed over it is never short.
func TestAdmissionKeepsItsBoundUnderContention(t *testing.T) {
	ad := newAdmitter(Admission{Rate: 24 * units.Mbit, Concurrency: 40, MaxWait: 2 * time.Second}, newAdmitMetrics(prometheus.NewRegistry()))
	rate, burst := ad.bucket.rate, ad.bucket.burst
	var mu sync.Mutex
	var parts []part
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
				// Mostly a returning store's batches, now and then one
				// larger than the burst.
				req.ContentLength = int64(r.IntN(300<<10) + 1000)
				if r.IntN(20) == 0 {
					req.ContentLength = int64(r.IntN(5<<20) + 1000)
				}
				// Forwarders whose patience ends while they queue: their
				// bookings are given up in the middle of the queue.
				rctx, rcancel := context.WithCancel(ctx)
				giveUp := time.AfterFunc(time.Duration(50+r.IntN(1500))*time.Millisecond, rcancel)
				ps, no := ad.admit(rctx, req)
				giveUp.Stop()
				rcancel()
				if no != nil {
					time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
					continue
				}
				mu.Lock()
				parts = append(parts, ps...)
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	sort.Slice(parts, func(i, j int) bool { return parts[i].Due.Before(parts[j].Due) })
	const w = 500 * time.Millisecond
	var sum, peak float64
	j := 0
	for _, p := range parts {
		sum += float64(p.Bytes)
		for p.Due.Sub(parts[j].Due) >= w {
			sum -= float64(parts[j].Bytes)
			j++
		}
		peak = max(peak, sum)
	}
	if limit := burst + rate*w.Seconds(); peak > limit*1.001 {
		t.Fatalf("%.0f bytes let in within %s, above the rate and a burst (%.0f); %d parts", peak, w, limit, len(parts))
	}
	tokens, short := burst, 0.0
	for i, p := range parts {
		if i > 0 {
			tokens = min(burst, tokens+rate*p.Due.Sub(parts[i-1].Due).Seconds())
		}
		tokens -= float64(p.Bytes)
		short = max(short, -tokens)
	}
	if short > burst/1000 {
		t.Fatalf("a bucket replayed over what was let in ran %.0f bytes short; %d parts", short, len(parts))
	}
	t.Logf("%d parts let in; the replayed bucket was never short by more than %.0f bytes", len(parts), short)
}

// A booking given up in the middle of the queue is not handed back (the
// ones behind it keep their times, so its bytes would be booked twice);
// the last one is. Times are the pacer's own, so this is exact.
func TestPacerHandsBackOnlyTheLastBooking(t *testing.T) {
	const mb = 1_000_000
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	p := &pacer{rate: 3 * mb, burst: 3 * mb}
	var got []part
	book := func(now float64, n int64) time.Time {
		t.Helper()
		dues, end, _, ok := p.book(at(now), []int64{n}, time.Minute)
		if !ok {
			t.Fatalf("booking %d bytes at %vs refused", n, now)
		}
		got = append(got, part{dues[0], n})
		return end
	}
	book(0, 3*mb)         // the burst: due at once
	endP := book(0, 3*mb) // due at 1 s
	book(0, 1*mb)         // due at 1.33 s
	p.cancel(endP, 3*mb)  // given up in the middle: kept
	got = append(got[:1], got[2:]...)
	book(0.1, 1*mb) // after the 1 MB, not in the gap
	endLast := book(0.1, 1*mb)
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Microsecond }
	if want := at(2); !near(got[len(got)-1].Due, want) {
		t.Errorf("the last booking is due at %v, want %v (after everything booked before it)", got[len(got)-1].Due.Sub(t0), want.Sub(t0))
	}
	p.cancel(endLast, 1*mb) // the last: handed back
	if dues, _, _, _ := p.book(at(0.1), []int64{1 * mb}, time.Minute); !near(dues[0], at(2)) {
		t.Errorf("after the last booking was given back, the next is due at %v, want 2s", dues[0].Sub(t0))
	}
	// What fell due never outran a bucket of 3 MB refilled at 3 MB/s.
	sort.Slice(got, func(i, j int) bool { return got[i].Due.Before(got[j].Due) })
	tokens := p.burst
	for i, g := range got {
		if i > 0 {
			tokens = min(p.burst, tokens+p.rate*g.Due.Sub(got[i-1].Due).Seconds())
		}
		if tokens -= float64(g.Bytes); tokens < -1 {
			t.Fatalf("booking %d (%d bytes at %v) overdrew the bucket by %.0f bytes", i, g.Bytes, g.Due.Sub(t0), -tokens)
		}
	}
}

// While every slot is storing, a batch that has arrived waits at most
// MaxWait and is then refused by the concurrency bound, with a
// Retry-After.
func TestConcurrencyRefuses(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "sink.db"), nil, WithoutAuth(), WithAdmission(Admission{Concurrency: 1, MaxWait: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.ad.slots.Acquire(context.Background(), 1); err != nil { // a store in progress
		t.Fatal(err)
	}
	body := `{"records":[]}`
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/batches", strings.NewReader(body))
	start := time.Now()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "concurrency") {
		t.Fatalf("%d %q (Retry-After %q), want 429 by the concurrency bound", w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Errorf("refused after %v, want after MaxWait (200ms)", el)
	}
	s.ad.slots.Release(1)
	w = httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/batches", strings.NewReader(body)))
	if w.Code != http.StatusOK {
		t.Fatalf("with the slot free: %d %s", w.Code, w.Body.String())
	}
}
