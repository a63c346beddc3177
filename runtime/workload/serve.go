package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
)

// Serve is the retail store's local service, a point-of-sale stand-in: it
// answers payments on the store's LAN whatever the uplink does, because
// each sale is recorded in the node's durable buffer (edgeguard serve,
// local) before the customer gets a receipt; the buffer forwards the sales
// when the uplink allows. A sale the buffer cannot take is refused (503),
// never answered as if recorded.
type Serve struct {
	Listen string // e.g. :9090
	To     string // edgeguard serve with --buffer, e.g. http://127.0.0.1:8474
	Stream string
	Events *events.Log
	Logger *slog.Logger
}

// Run serves until ctx ends. POST /pay records a sale and answers its
// receipt (JSON: stream, seq, key); GET /healthz answers ok.
func (s Serve) Run(ctx context.Context) error {
	if s.To == "" || s.Stream == "" {
		return errors.New("workload serve needs --to (edgeguard serve with --buffer) and --stream")
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	p := Produce{URL: strings.TrimRight(s.To, "/"), Stream: s.Stream, Client: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}}
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		start := time.Now()
		payload := fmt.Appendf(nil, "sale #%d from %s at %s", k, r.RemoteAddr, start.UTC().Format(time.RFC3339Nano))
		rc, err := p.append(r.Context(), payload)
		if err != nil {
			s.Events.Emit("refused", "n", k, "err", err.Error())
			http.Error(w, "the sale could not be recorded: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.Events.Emit("acked", "stream", s.Stream, "seq", rc.Seq, "key", rc.Key, "hash", rc.Hash, "n", k, "ms", time.Since(start).Milliseconds())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rc)
	})
	l, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("workload serve: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.Events.Emit("listening", "addr", l.Addr().String(), "stream", s.Stream)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
