// Command ingest is the cloud side of the example app edgefault certifies
// (docs/certify-your-app.md): it takes the readings the edge agents POST
// to /ingest and logs each one it receives as app evidence, a
// {"event":"received","id":...} line in $APP_EVENTS. It keeps nothing
// else: what arrived is what its evidence says.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
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
		line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "event": "received", "id": in.ID})
		mu.Lock()
		_, err := out.Write(append(line, '\n'))
		mu.Unlock()
		if err != nil {
			http.Error(w, "cannot record it", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	log.Info("ingest listening", "addr", *listen, "events", events)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
