// Package content is the cloud's content server: what the sample workload
// fetches, kept apart from the speed-test server so probe traffic and
// workload traffic can be told apart. It logs every page it serves.
//
//	GET /page        a page of the configured size (incompressible bytes)
//	GET /page?size=N a page of N bytes (up to 64 MiB)
//	GET /stats       JSON: pages and bytes served
package content

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
)

// Server serves pages. Create it with New.
type Server struct {
	size  int64
	page  []byte
	log   *events.Log
	pages atomic.Int64
	bytes atomic.Int64
	mux   *http.ServeMux
}

// New returns a server whose pages are size bytes, logging to log.
func New(size int64, log *events.Log) *Server {
	s := &Server{size: size, log: log, page: make([]byte, 1<<16)}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range s.page {
		s.page[i] = byte(r.Uint32())
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /page", s.serve)
	s.mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"pages": s.pages.Load(), "bytes": s.bytes.Load()})
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	size := s.size
	if q := r.URL.Query().Get("size"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "size must be a byte count up to 67108864", http.StatusBadRequest)
			return
		}
		size = n
	}
	start := time.Now()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	var sent int64
	for sent < size {
		n, err := w.Write(s.page[:min(int64(len(s.page)), size-sent)])
		sent += int64(n)
		if err != nil {
			break
		}
	}
	s.bytes.Add(sent)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if sent == size {
		s.pages.Add(1)
		s.log.Emit("served", "remote", host, "bytes", sent, "ms", time.Since(start).Milliseconds(), "client", r.Header.Get("X-Edgefault-Node"))
	} else {
		s.log.Emit("cut-short", "remote", host, "bytes", sent, "of", size, "ms", time.Since(start).Milliseconds(), "client", r.Header.Get("X-Edgefault-Node"))
	}
}

// String describes the server for logs.
func (s *Server) String() string { return fmt.Sprintf("content server (%d-byte pages)", s.size) }
