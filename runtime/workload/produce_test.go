package workload

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/events"
)

// A producer in another pod reaches edgeguard serve through its records
// socket: --to unix:///path.
func TestProduceOverTheRecordsSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "edgeguard.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in buffer.Input
		if r.URL.Path != "/v1/records" || json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in) != nil || in.Stream != "pos" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		n := got.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"receipts": []buffer.Receipt{{Stream: "pos", Seq: uint64(n), Key: "n/e/pos/1", Hash: "ab"}}})
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ev, _ := events.Open("", "n", "producer", slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Produce{URL: "unix://" + sock, Stream: "pos", Period: 10 * time.Millisecond, Count: 3, Events: ev, Logger: slog.New(slog.DiscardHandler)}.Run(ctx)
	if err != nil || got.Load() != 3 {
		t.Fatalf("produced over the socket: %d appends, %v", got.Load(), err)
	}
}
