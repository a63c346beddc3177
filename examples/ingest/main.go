// Command ingest is the cloud side of the example app edgefault certifies
// (docs/certify-your-app.md): it takes the readings the edge agents POST
// to /ingest and logs each new one as app evidence, a
// {"event":"received","id":...} line in $APP_EVENTS. It is idempotent: an
// agent that retries a POST whose answer it lost (the link died
// mid-request) sends a reading again, and ingest acknowledges it without
// taking it twice. The ids it has taken are its evidence file's
// "received" lines, read again when it starts: one write records a
// reading, so a crash never leaves it taken but unrecorded.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", ":9000", "address to serve on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	events := os.Getenv("APP_EVENTS")
	if events == "" {
		log.Error("APP_EVENTS is not set: run me as a workload of an edgefault scenario (or set it to a file)")
		os.Exit(2)
	}
	out, err := os.OpenFile(events, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("open the evidence file", "err", err)
		os.Exit(1)
	}
	defer out.Close()
	seen, err := loadSeen(events)
	if err != nil {
		log.Error("the ids taken so far", "err", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&in); err != nil || in.ID == "" || len(in.ID) > 128 {
			http.Error(w, `want {"id":"..."}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[in.ID] {
			w.WriteHeader(http.StatusNoContent) // taken already: acknowledge again
			return
		}
		// Recorded (one write, synced) before it is acknowledged.
		line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "event": "received", "id": in.ID})
		_, err := out.Write(append(line, '\n'))
		if err == nil {
			err = out.Sync()
		}
		if err != nil {
			http.Error(w, "cannot record it", http.StatusInternalServerError)
			return
		}
		seen[in.ID] = true
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	log.Info("ingest listening", "addr", *listen, "events", events)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// loadSeen reads the ids taken so far from the evidence file's
// "received" lines.
func loadSeen(events string) (map[string]bool, error) {
	seen := map[string]bool{}
	b, err := os.ReadFile(events)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		var e struct{ Event, ID string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Event == "received" && e.ID != "" {
			seen[e.ID] = true
		}
	}
	return seen, nil
}
