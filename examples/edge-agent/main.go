// Command edge-agent is the edge side of the example app edgefault
// certifies (docs/certify-your-app.md): every period it takes a reading
// and must get it to the cloud's ingest service ($INGEST_ADDR). It logs
// each reading it takes as app evidence, a {"event":"sent","id":...} line
// in $APP_EVENTS: from then on the reading is its to deliver.
//
// By default it buffers: a reading is written to $DATA_DIR/queue (synced)
// before it is logged, and a sender delivers the queue in order, retrying
// while the link is down, so readings survive an outage and a crash. With
// -naive it posts each reading once and drops it when that fails: the
// app a certification should catch.
//
// With -no-reconnect it keeps to its first connection to the cloud and
// never dials again once that breaks: the negative control for an uplink
// that comes back with a new address.
//
// With -listen it serves /healthz (the buffering agent answers from the
// node, online or not; the naive one asks the cloud first, so it stops
// answering offline) and /metrics (edge_agent_queue_depth,
// edge_agent_readings_total, edge_agent_dropped_total), for the
// endpoint-answers and metric validators.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	period := flag.Duration("period", time.Second, "time between readings")
	naive := flag.Bool("naive", false, "post each reading once and drop it if that fails (no buffer)")
	noReconnect := flag.Bool("no-reconnect", false, "keep to the first connection to the cloud: once it breaks, never dial again (the negative control for an uplink that comes back with a new address)")
	listen := flag.String("listen", "", "serve /healthz and /metrics here (e.g. :8000)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := newAgent(*naive, *noReconnect)
	if err != nil {
		log.Error("edge-agent", "err", err)
		os.Exit(2)
	}
	defer a.events.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if !a.naive {
		go a.sendLoop(ctx, log)
	}
	if *listen != "" {
		srv := &http.Server{Addr: *listen, Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "err", err)
				os.Exit(1)
			}
		}()
		defer srv.Close()
	}
	t := time.NewTicker(*period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.reading(ctx); err != nil {
			log.Error("a reading", "err", err)
		}
	}
}

type agent struct {
	naive  bool
	node   string
	ingest string
	queue  string // $DATA_DIR/queue: one file per reading, named by its number
	data   string
	events *os.File
	client *http.Client
	// readings and dropped count since this start.
	readings, dropped atomic.Int64
}

func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.naive {
			// Healthy only if the cloud is: the design that fails its
			// users while offline.
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.ingest, "/ingest")+"/healthz", nil)
			resp, err := a.client.Do(req)
			if err != nil {
				http.Error(w, "the cloud is unreachable", http.StatusServiceUnavailable)
				return
			}
			resp.Body.Close()
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		depth := 0
		if names, err := os.ReadDir(a.queue); err == nil {
			for _, e := range names {
				if !strings.HasSuffix(e.Name(), ".tmp") {
					depth++
				}
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP edge_agent_queue_depth Readings buffered on disk, not yet taken by the cloud.\n# TYPE edge_agent_queue_depth gauge\nedge_agent_queue_depth %d\n", depth)
		fmt.Fprintf(w, "# HELP edge_agent_readings_total Readings taken since this start.\n# TYPE edge_agent_readings_total counter\nedge_agent_readings_total %d\n", a.readings.Load())
		fmt.Fprintf(w, "# HELP edge_agent_dropped_total Readings dropped since this start.\n# TYPE edge_agent_dropped_total counter\nedge_agent_dropped_total %d\n", a.dropped.Load())
	})
	return mux
}

func newAgent(naive, noReconnect bool) (*agent, error) {
	a := &agent{naive: naive, node: os.Getenv("NODE_NAME"), client: &http.Client{Timeout: 2 * time.Second}}
	if noReconnect {
		// One connection for the agent's life, as clients that open a
		// session at start and never look back do: a reset on it (the
		// uplink's address changed under it) ends the agent's deliveries.
		var dialed atomic.Bool
		d := &net.Dialer{Timeout: 2 * time.Second}
		a.client.Transport = &http.Transport{MaxConnsPerHost: 1, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dialed.Swap(true) {
				return nil, errors.New("this agent does not reconnect (-no-reconnect)")
			}
			return d.DialContext(ctx, network, addr)
		}}
	}
	if naive {
		// A connection per reading, as fire-and-forget clients do. (On a
		// kept-alive connection a request given up on still sits in the
		// kernel's send queue, and TCP delivers it when the link returns:
		// the reading would arrive after all.)
		a.client.Transport = &http.Transport{DisableKeepAlives: true}
	}
	addr := os.Getenv("INGEST_ADDR")
	a.data = os.Getenv("DATA_DIR")
	ev := os.Getenv("APP_EVENTS")
	if addr == "" || a.data == "" || ev == "" || a.node == "" {
		return nil, errors.New("INGEST_ADDR, DATA_DIR, APP_EVENTS and NODE_NAME must be set: run me as a workload of an edgefault scenario with a cloud workload named ingest")
	}
	a.ingest = "http://" + addr + "/ingest"
	a.queue = filepath.Join(a.data, "queue")
	if err := os.MkdirAll(a.queue, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(ev, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	a.events = f
	return a, nil
}

// next is the number of the next reading, kept in $DATA_DIR so that a
// restarted agent never reuses an id.
func (a *agent) next() (int, error) {
	p := filepath.Join(a.data, "next")
	n := 1
	if b, err := os.ReadFile(p); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return n, writeSynced(p, []byte(strconv.Itoa(n+1)))
}

func (a *agent) reading(ctx context.Context) error {
	n, err := a.next()
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%s-%d", a.node, n)
	if !a.naive {
		// Buffered before it is promised.
		if err := writeSynced(filepath.Join(a.queue, fmt.Sprintf("%012d", n)), []byte(id)); err != nil {
			return err
		}
	}
	if err := a.log("sent", id); err != nil {
		return err
	}
	a.readings.Add(1)
	if a.naive {
		if err := a.post(ctx, id); err != nil {
			a.dropped.Add(1)
			a.log("dropped", id)
		}
	}
	return nil
}

// sendLoop delivers the queue oldest first; a reading leaves the queue
// only once the cloud has taken it.
func (a *agent) sendLoop(ctx context.Context, log *slog.Logger) {
	for ctx.Err() == nil {
		names, _ := os.ReadDir(a.queue)
		sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
		sentAny := false
		for _, e := range names {
			if strings.HasSuffix(e.Name(), ".tmp") {
				continue // still being written
			}
			p := filepath.Join(a.queue, e.Name())
			id, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			if err := a.post(ctx, string(id)); err != nil {
				break // the link is down: keep the order, try again
			}
			os.Remove(p)
			sentAny = true
		}
		if !sentAny {
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

func (a *agent) post(ctx context.Context, id string) error {
	body, _ := json.Marshal(map[string]string{"id": id})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.ingest, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ingest answered %s", resp.Status)
	}
	return nil
}

func (a *agent) log(event, id string) error {
	line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "event": event, "id": id})
	_, err := a.events.Write(append(line, '\n'))
	return err
}

// writeSynced replaces p with b, durably.
func writeSynced(p string, b []byte) error {
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
