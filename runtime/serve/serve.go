// Package serve is the HTTP face of edgeguard serve: health, readiness that
// follows the gate, the gate's status as JSON with change notifications
// (long poll and server-sent events), passive measurements from the
// workload, and Prometheus metrics.
//
//	GET  /healthz              200 while the process runs (never the link: see docs/deploy.md)
//	GET  /readyz               200 when the gate is open, 503 with the state and reason otherwise
//	GET  /v1/gate              the status document (wire.GateStatus)
//	GET  /v1/gate?after=N      long poll: answers once the state change counter passes N (or after wait=, default 30s)
//	GET  /v1/gate/events       server-sent events, one "gate" event per state change
//	POST /v1/gate/observe      {"bytes":N,"seconds":S}: a transfer the workload made (loopback only)
//	GET  /metrics              Prometheus
//
// With WithBuffer, also POST /v1/records and GET /v1/buffer (records.go).
package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gate is what the server needs from the speed gate.
type Gate interface {
	Status() wire.GateStatus
	Subscribe(ctx context.Context) <-chan wire.GateStatus
	Observe(bytes int64, d time.Duration)
}

// Observation is the body of POST /v1/gate/observe.
type Observation struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// Option adds to the handler.
type Option func(*http.ServeMux, *prometheus.Registry)

// WithBuffer serves the store-and-forward buffer's producer API and
// metrics (see records).
func WithBuffer(b *buffer.Buffer) Option {
	return func(mux *http.ServeMux, reg *prometheus.Registry) { records(mux, b, reg) }
}

// Handler returns the HTTP handler for g. Metrics go to a registry of its
// own, so two servers in one process (tests) do not collide.
func Handler(g Gate, opts ...Option) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s := g.Status()
		if !s.Open {
			http.Error(w, fmt.Sprintf("gate %s: %s", s.State, s.Reason), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "gate %s\n", s.State)
	})
	mux.HandleFunc("GET /v1/gate", func(w http.ResponseWriter, r *http.Request) {
		s := g.Status()
		if a := r.URL.Query().Get("after"); a != "" {
			after, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				http.Error(w, "after must be a state change counter (seq)", http.StatusBadRequest)
				return
			}
			wait := 30 * time.Second
			if ws := r.URL.Query().Get("wait"); ws != "" {
				if wait, err = time.ParseDuration(ws); err != nil || wait < 0 || wait > 5*time.Minute {
					http.Error(w, "wait must be a duration up to 5m", http.StatusBadRequest)
					return
				}
			}
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			defer cancel()
			for st := range g.Subscribe(ctx) {
				s = st
				if st.Seq > after {
					break
				}
			}
		}
		writeJSON(w, s)
	})
	mux.HandleFunc("GET /v1/gate/events", func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		ctx := r.Context()
		keep := time.NewTicker(15 * time.Second)
		defer keep.Stop()
		ch := g.Subscribe(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-keep.C:
				fmt.Fprint(w, ": keep-alive\n\n")
				fl.Flush()
			case s, ok := <-ch:
				if !ok {
					return
				}
				b, _ := json.Marshal(s)
				fmt.Fprintf(w, "id: %d\nevent: gate\ndata: %s\n\n", s.Seq, b)
				fl.Flush()
			}
		}
	})
	mux.HandleFunc("POST /v1/gate/observe", func(w http.ResponseWriter, r *http.Request) {
		// Only the node's own workloads may vouch for its link: serve
		// listens on the pod IP for the kubelet's probes, and a sample
		// from anywhere else could hold a bad link open.
		if !fromLoopback(r) {
			http.Error(w, "observations are accepted from loopback only", http.StatusForbidden)
			return
		}
		var o Observation
		// A transfer of a millisecond to an hour: outside that, a sample
		// says nothing about the link (1e-300 s is 0 as a duration).
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&o); err != nil || o.Bytes < 0 || o.Bytes > 1<<40 || !(o.Seconds >= 0.001 && o.Seconds <= 3600) {
			http.Error(w, `want {"bytes":N,"seconds":S} with 0 <= N <= 2^40 and 0.001 <= S <= 3600`, http.StatusBadRequest)
			return
		}
		g.Observe(o.Bytes, time.Duration(o.Seconds*float64(time.Second)))
		w.WriteHeader(http.StatusNoContent)
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{g: g})
	for _, o := range opts {
		o(mux, reg)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func fromLoopback(r *http.Request) bool {
	// The Unix socket is local by construction (its directory's
	// permissions say who may use it).
	if _, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); ok {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var (
	descState    = prometheus.NewDesc("edgeguard_gate_state", "1 for the gate's current state, 0 for the others.", []string{"state"}, nil)
	descOpen     = prometheus.NewDesc("edgeguard_gate_open", "1 when the workload may use the link.", nil, nil)
	descChanges  = prometheus.NewDesc("edgeguard_gate_changes_total", "State changes since start.", nil, nil)
	descProbe    = prometheus.NewDesc("edgeguard_gate_probe_bytes_total", "Bytes the gate moved over the link to measure it (all probe kinds).", nil, nil)
	descDown     = prometheus.NewDesc("edgeguard_gate_download_bits_per_second", "Download rate of the last measurement, by kind.", []string{"kind"}, nil)
	descLatency  = prometheus.NewDesc("edgeguard_gate_latency_seconds", "Round trip of the last probe or full test.", nil, nil)
	descCapacity = prometheus.NewDesc("edgeguard_gate_capacity_bits_per_second", "Download rate of the last full test.", nil, nil)
)

// collector reads the gate's status at scrape time: no second copy of the
// state to keep in step.
type collector struct{ g Gate }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descOpen, descChanges, descProbe, descDown, descLatency, descCapacity} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Status()
	for _, st := range []wire.GateState{wire.Open, wire.Closed, wire.Unknown} {
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(s.State == st), string(st))
	}
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, b2f(s.Open))
	ch <- prometheus.MustNewConstMetric(descChanges, prometheus.CounterValue, float64(s.Seq))
	ch <- prometheus.MustNewConstMetric(descProbe, prometheus.CounterValue, float64(s.ProbeBytes))
	ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, s.CapacityBps)
	seen := map[string]bool{}
	for i := len(s.Measurements) - 1; i >= 0; i-- {
		m := s.Measurements[i]
		if m.Verdict == "failed" || seen[m.Kind] {
			continue
		}
		seen[m.Kind] = true
		ch <- prometheus.MustNewConstMetric(descDown, prometheus.GaugeValue, m.DownloadBps, m.Kind)
		if m.Kind != "passive" && !seen["latency"] {
			seen["latency"] = true
			ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, m.Latency.Seconds())
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
