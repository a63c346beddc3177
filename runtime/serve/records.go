package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/internal/limit"
	"github.com/prometheus/client_golang/prometheus"
)

// Records serves the buffer's producer API on mux:
//
//	POST /v1/records            JSON: one {"stream","meta","payload"(base64)} or an array of them
//	POST /v1/records?stream=S   the raw body is one record's payload
//	GET  /v1/buffer             the buffer's counters
//
// A 200 answer means every record in it is durable (its "durability" says
// "memory" in memory mode, where it is only queued). 507 is back-pressure:
// the buffer is full (block policy) or the disk is; 403: not from this
// node (loopback or the Unix socket); 413: the request alone
// exceeds a bound or 16 MiB; 400: bad input (a stream name must be 1-200
// bytes of UTF-8 without '/' or control characters), refused before it is
// grouped with other appends; 503: the buffer is closing or a
// commit failed. In every error case nothing of the request was stored,
// so retrying is safe.
func records(mux *http.ServeMux, b *buffer.Buffer, reg *prometheus.Registry) {
	// 24 MiB of bodies in memory at once (decoding doubles it at worst):
	// the DaemonSet's container has 64 MiB.
	bodies := limit.NewBodies(24<<20, maxRecordsBody)
	mux.HandleFunc("POST /v1/records", func(w http.ResponseWriter, r *http.Request) {
		// serve listens on the node's address for the kubelet's probes
		// and the gate's status; what is appended comes from the node's
		// own workloads only (loopback, or the Unix socket).
		if !fromLoopback(r) {
			http.Error(w, "records are accepted from this node only: post to 127.0.0.1 or the Unix socket (--socket)", http.StatusForbidden)
			return
		}
		release, err := bodies.Acquire(r.Context(), r)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: too many large requests at once; retry", http.StatusTooManyRequests)
			return
		}
		defer release()
		body, err := readBody(http.MaxBytesReader(w, r.Body, maxRecordsBody), r.ContentLength)
		if err != nil {
			code := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "reading the body (at most 16 MiB a request): "+err.Error(), code)
			return
		}
		var in []buffer.Input
		if s := r.URL.Query().Get("stream"); s != "" {
			in = []buffer.Input{{Stream: s, Payload: body}}
		} else {
			if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
				err = json.Unmarshal(body, &in)
			} else {
				var one buffer.Input
				err = json.Unmarshal(body, &one)
				in = []buffer.Input{one}
			}
			if err != nil {
				http.Error(w, `want {"stream":"name","payload":"<base64>"} (or an array of them), or ?stream=name with a raw body: `+err.Error(), http.StatusBadRequest)
				return
			}
		}
		out, err := b.Append(r.Context(), in...)
		switch {
		case err == nil:
			// In memory mode the answer says so: a 200 there is not "on disk".
			writeJSON(w, map[string]any{"receipts": out, "durability": b.Stats().Durability})
		case errors.Is(err, buffer.ErrTooLarge):
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		case errors.Is(err, buffer.ErrFailed):
			// Whether it was stored is unknown: a retry after the restart
			// may store it twice (under another sequence number).
			http.Error(w, "outcome unknown, the buffer stopped (edgeguard restarts): "+err.Error(), http.StatusInternalServerError)
		case errors.Is(err, buffer.ErrFull) || diskFull(err):
			w.Header().Set("Retry-After", "5")
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
		case errors.Is(err, buffer.ErrInvalid) || strings.Contains(err.Error(), "nothing to append"):
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			// Nothing of the request was stored (the buffer is closing or
			// a commit failed): retrying is safe.
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /v1/buffer", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, b.Stats()) })
	reg.MustRegister(bufferCollector{b})
}

// readBody reads a body of the length it declared into one buffer of that
// size (io.ReadAll would grow and copy it, doubling what a large body
// costs), or of unknown length as ReadAll does.
func readBody(r io.Reader, n int64) ([]byte, error) {
	if n <= 0 || n > maxRecordsBody {
		return io.ReadAll(r)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// maxRecordsBody bounds one POST /v1/records.
const maxRecordsBody = 16 << 20

// diskFull recognises a full disk or quota, also where bbolt formats the
// cause into its message instead of wrapping it.
func diskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "no space left on device") || strings.Contains(m, "disk quota exceeded")
}

var (
	descBufRecords   = prometheus.NewDesc("edgeguard_buffer_records", "Records waiting to be forwarded.", nil, nil)
	descBufBytes     = prometheus.NewDesc("edgeguard_buffer_bytes", "Bytes waiting to be forwarded.", nil, nil)
	descBufAge       = prometheus.NewDesc("edgeguard_buffer_oldest_age_seconds", "Age of the oldest waiting record (0 when empty).", nil, nil)
	descBufFlush     = prometheus.NewDesc("edgeguard_buffer_flush_bits_per_second", "Recent flush rate to the sink.", nil, nil)
	descBufDropped   = prometheus.NewDesc("edgeguard_buffer_dropped_total", "Records dropped by the overflow policy.", nil, nil)
	descBufIn        = prometheus.NewDesc("edgeguard_buffer_appended_total", "Records appended (acknowledged).", nil, nil)
	descBufOut       = prometheus.NewDesc("edgeguard_buffer_forwarded_total", "Records the sink acknowledged.", nil, nil)
	descBufCommits   = prometheus.NewDesc("edgeguard_buffer_commits_total", "Disk commits (each holds many appends).", nil, nil)
	descBufThrottled = prometheus.NewDesc("edgeguard_buffer_throttled_total", "Times the sink answered 429 (its admission) and the flush waited its Retry-After.", nil, nil)
	descBufDead      = prometheus.NewDesc("edgeguard_buffer_dead_lettered", "Records the sink can never store, moved out of the queue (kept in the buffer's database).", nil, nil)
)

type bufferCollector struct{ b *buffer.Buffer }

func (c bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBufRecords, descBufBytes, descBufAge, descBufFlush, descBufDropped, descBufIn, descBufOut, descBufCommits, descBufDead, descBufThrottled} {
		ch <- d
	}
}

func (c bufferCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	age := 0.0
	if !s.Oldest.IsZero() && s.Records > 0 {
		age = time.Since(s.Oldest).Seconds()
	}
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v float64
	}{
		{descBufRecords, prometheus.GaugeValue, float64(s.Records)},
		{descBufBytes, prometheus.GaugeValue, float64(s.Bytes)},
		{descBufAge, prometheus.GaugeValue, age},
		{descBufFlush, prometheus.GaugeValue, s.FlushBps},
		{descBufDropped, prometheus.CounterValue, float64(s.Dropped)},
		{descBufIn, prometheus.CounterValue, float64(s.Appended)},
		{descBufOut, prometheus.CounterValue, float64(s.Forwarded)},
		{descBufCommits, prometheus.CounterValue, float64(s.Commits)},
		{descBufDead, prometheus.GaugeValue, float64(s.DeadLettered)},
		{descBufThrottled, prometheus.CounterValue, float64(s.Throttled)},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
	}
}
