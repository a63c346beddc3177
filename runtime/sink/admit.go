package sink

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edgefault/edgefault/units"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Admission bounds what the sink takes in, so a region of sites coming
// back at once is served at the sink's pace instead of timing out: a batch
// within the bounds is stored; one that would have to wait longer than
// MaxWait is refused with 429 and a Retry-After that says when its turn
// would come. A batch refused by the rate costs the sink no body read, and
// forwarders keep every refused batch (a 429 is never a reason to drop or
// dead-letter a record).
type Admission struct {
	// Rate is the ingest rate: batch bodies per second, as their
	// Content-Length says (0: unbounded). Bursts of a second's worth
	// (at least one large batch) pass at once.
	Rate units.Rate
	// Concurrency is how many batches, once read, are decoded and stored
	// at once (0: unbounded); the sink stores one at a time, so a few
	// more than one keeps its disk busy. Bodies are read outside this
	// bound (the rate and the memory budget bound them), so a store on a
	// slow uplink holds no slot while its batch crosses it.
	Concurrency int
	// MaxWait is the longest a batch queues for its turn before it is
	// refused (default 2s). A short queue smooths arrivals without holding
	// connections open long enough for forwarders to time out.
	MaxWait time.Duration
}

// WithAdmission bounds the sink's ingest (see Admission).
func WithAdmission(a Admission) Option { return func(s *Sink) { s.admission = a } }

// admitter applies an Admission and counts what it does.
type admitter struct {
	a      Admission
	bucket *pacer              // nil: no rate bound
	slots  *semaphore.Weighted // nil: no concurrency bound
	m      *admitMetrics
}

// pacer books bytes at a rate with a burst: GCRA, the virtual-scheduling
// form of a token bucket. A booking is due when a bucket of burst bytes,
// refilled at rate, would have held it; in any span T no more than rate×T
// plus one burst falls due. A booking is handed back only while it is the
// last one: rate.Limiter's CancelAt hands back a reservation in the middle
// of a queue while the ones behind it keep their times, and the bytes
// booked next took their slots again (the sink let in 2.8 MB beyond its
// bucket when a regional reconnect's queued batches timed out).
type pacer struct {
	rate  float64 // bytes per second
	burst float64
	mu    sync.Mutex
	tat   time.Time // when the bucket is full again (theoretical arrival time)
}

func (p *pacer) cost(n int64) time.Duration {
	return time.Duration(float64(n) / p.rate * float64(time.Second))
}

// book books parts (each at most a burst) one after another if the last
// is due within within of now, and says when each is due and where the
// booking ends (for cancel); otherwise it books nothing and says how long
// the last would have waited.
func (p *pacer) book(now time.Time, parts []int64, within time.Duration) (dues []time.Time, end time.Time, wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tau := p.cost(int64(p.burst))
	tat := p.tat
	if tat.Before(now) {
		tat = now
	}
	for _, n := range parts {
		tat = tat.Add(p.cost(n))
		due := tat.Add(-tau)
		if due.Before(now) {
			due = now
		}
		dues = append(dues, due)
	}
	// A batch due now is let in even if the slot's wait used up MaxWait.
	if wait = dues[len(dues)-1].Sub(now); wait > max(within, 0) {
		return nil, time.Time{}, wait, false
	}
	p.tat = tat
	return dues, tat, wait, true
}

// cancel hands back the booking that ended at end, of n bytes, if nothing
// was booked after it.
func (p *pacer) cancel(end time.Time, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tat.Equal(end) {
		p.tat = p.tat.Add(-p.cost(n))
	}
}

type admitMetrics struct {
	admitted      prometheus.Counter
	admittedBytes prometheus.Counter
	refused       *prometheus.CounterVec
	waiting       prometheus.Gauge
	inFlight      prometheus.Gauge
	wait          prometheus.Histogram
	stored        prometheus.Counter
	duplicates    prometheus.Counter
	conflicts     prometheus.Counter
	limitBytes    prometheus.Gauge
	limitBatches  prometheus.Gauge
}

func newAdmitMetrics(reg prometheus.Registerer) *admitMetrics {
	m := &admitMetrics{
		admitted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeguard_sink_admitted_batches_total", Help: "Batches admitted by the ingest rate (then read, and stored once a slot is free)."}),
		admittedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeguard_sink_admitted_bytes_total", Help: "Body bytes of admitted batches (what the ingest rate bounds)."}),
		refused:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeguard_sink_refused_batches_total", Help: "Batches refused with 429, by the bound that refused them (rate, concurrency, memory)."}, []string{"bound"}),
		waiting:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeguard_sink_queued_batches", Help: "Batches waiting for their turn now."}),
		inFlight:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeguard_sink_inflight_batches", Help: "Batches being decoded and stored now (in a concurrency slot)."}),
		wait:          prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edgeguard_sink_admission_wait_seconds", Help: "How long admitted batches queued.", Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}}),
		stored:        prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeguard_sink_stored_records_total", Help: "Records stored (first arrivals)."}),
		duplicates:    prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeguard_sink_duplicate_records_total", Help: "Resent records refused as duplicates."}),
		conflicts:     prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeguard_sink_conflict_records_total", Help: "Records whose key was stored before with other content."}),
		limitBytes:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeguard_sink_admission_rate_bytes_per_second", Help: "The configured ingest rate (0: unbounded)."}),
		limitBatches:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeguard_sink_admission_concurrency", Help: "The configured concurrency (0: unbounded)."}),
	}
	reg.MustRegister(m.admitted, m.admittedBytes, m.refused, m.waiting, m.inFlight, m.wait, m.stored, m.duplicates, m.conflicts, m.limitBytes, m.limitBatches)
	for _, b := range []string{"rate", "concurrency", "memory"} {
		m.refused.WithLabelValues(b) // shown at 0 before the first refusal
	}
	return m
}

func newAdmitter(a Admission, m *admitMetrics) *admitter {
	if a.MaxWait <= 0 {
		a.MaxWait = 2 * time.Second
	}
	ad := &admitter{a: a, m: m}
	if a.Rate > 0 {
		bps := float64(a.Rate.BytesPerSecond())
		// A second's worth, and at least 512 KiB (two default batches).
		ad.bucket = &pacer{rate: bps, burst: max(bps, 512<<10)}
		m.limitBytes.Set(bps)
	}
	if a.Concurrency > 0 {
		ad.slots = semaphore.NewWeighted(int64(a.Concurrency))
		m.limitBatches.Set(float64(a.Concurrency))
	}
	return ad
}

// describe is the bounds in force, as event fields (0: unbounded).
func (ad *admitter) describe() []any {
	var bps, burst float64
	if ad.bucket != nil {
		bps, burst = ad.bucket.rate, ad.bucket.burst
	}
	return []any{"rateBytesPerSecond", bps, "burstBytes", burst, "concurrency", ad.a.Concurrency, "maxWaitSeconds", ad.a.MaxWait.Seconds()}
}

// refusal is a 429 to answer: which bound refused, and when to come back.
type refusal struct {
	bound string
	after time.Duration
}

// part is bytes the rate bound let in at a time: a batch larger than the
// burst is let in as several.
type part struct {
	Due   time.Time
	Bytes int64
}

// admit waits for r's turn at the ingest rate, or says why and for how
// long it must come back later; parts say when the rate bound let its
// bytes in (their turn, before the wake-up's own delay). The batch's body
// is read after it, and only then does the batch wait for a slot: one
// refused there has used its turn at the rate (the bucket errs against
// the sender, never beyond its bound).
func (ad *admitter) admit(ctx context.Context, r *http.Request) (parts []part, no *refusal) {
	start := time.Now()
	ad.m.waiting.Inc()
	defer ad.m.waiting.Dec()
	ctx, cancel := context.WithTimeout(ctx, ad.a.MaxWait)
	defer cancel()
	parts = []part{{time.Now(), max(r.ContentLength, 0)}}
	if ad.bucket != nil {
		var d time.Duration
		var ok bool
		if parts, d, ok = ad.reserve(ctx, r.ContentLength); !ok {
			return nil, &refusal{"rate", d}
		}
	}
	ad.m.wait.Observe(time.Since(start).Seconds())
	ad.m.admitted.Inc()
	if r.ContentLength > 0 {
		ad.m.admittedBytes.Add(float64(r.ContentLength))
	}
	return parts, nil
}

// slot waits (at most MaxWait) for one of the Concurrency slots in which a
// batch already read is decoded and stored. Bodies are read outside them,
// at the sender's pace: a batch crossing a 1.4 Mbit/s DSL line held a slot
// for seconds when slots were taken before the read, and a region's slow
// stores starved a sink that had bandwidth to spare.
func (ad *admitter) slot(ctx context.Context) (release func(), no *refusal) {
	if ad.slots != nil {
		ctx, cancel := context.WithTimeout(ctx, ad.a.MaxWait)
		defer cancel()
		if err := ad.slots.Acquire(ctx, 1); err != nil {
			return nil, &refusal{"concurrency", ad.a.MaxWait}
		}
	}
	ad.m.inFlight.Inc()
	return func() {
		ad.m.inFlight.Dec()
		if ad.slots != nil {
			ad.slots.Release(1)
		}
	}, nil
}

// reserve books n bytes with the pacer and waits for them within ctx (the
// sink refuses a body of unknown size before). A batch larger than the
// burst is booked in burst-sized parts, so that it pays for all of its
// bytes. It returns when each part was due, or the wait it would have
// needed when that is past what is left of MaxWait (nothing is then
// booked).
func (ad *admitter) reserve(ctx context.Context, n int64) ([]part, time.Duration, bool) {
	n = max(n, 1)
	burst := int64(ad.bucket.burst)
	var sizes []int64
	for left := n; left > 0; left -= burst {
		sizes = append(sizes, min(left, burst))
	}
	now := time.Now()
	within := ad.a.MaxWait
	if dl, ok := ctx.Deadline(); ok {
		within = min(within, dl.Sub(now))
	}
	dues, end, d, ok := ad.bucket.book(now, sizes, within)
	if !ok {
		return nil, d, false
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			// The forwarder went away (or the deadline came a hair early).
			ad.bucket.cancel(end, n)
			return nil, d, false
		case <-t.C:
		}
	}
	taken := make([]part, len(dues))
	for i := range dues {
		taken[i] = part{dues[i], sizes[i]}
	}
	return taken, 0, true
}

// refuse answers 429 with a Retry-After (whole seconds, at least 1) and
// counts the refusal.
func (ad *admitter) refuse(w http.ResponseWriter, no *refusal) {
	ad.m.refused.WithLabelValues(no.bound).Inc()
	secs := int(math.Ceil(no.after.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	http.Error(w, fmt.Sprintf("busy: the sink's %s bound is reached; retry after %ds", no.bound, max(secs, 1)), http.StatusTooManyRequests)
}
