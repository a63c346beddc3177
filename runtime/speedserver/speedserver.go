// Package speedserver is an Ookla-compatible speed-test server: the three
// endpoints speedtest-go (and the gate's cheap probes) use, under
// /speedtest/. Tests and the embedded fleet run it in the cloud namespace,
// and an air-gapped site can run it on its own LAN or in its datacentre.
//
//	GET  /speedtest/latency.txt        "test=test\n"
//	GET  /speedtest/random{N}x{N}.jpg  about 2·N² incompressible bytes; honours Range
//	POST /speedtest/upload.php         reads the body, answers "size=<bytes>"
//	GET  /stats                        JSON: bytes sent and received, requests
//
// Every answered request is an event (what was served, to whom, how many
// bytes), so the harness can count exactly what probing cost.
package speedserver

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
)

// MaxSide bounds N in random{N}x{N}.jpg (Ookla's largest is 4000: ~32 MB).
const MaxSide = 4000

// Stats are the server's counters, as served at /stats.
type Stats struct {
	BytesSent     int64 `json:"bytesSent"`
	BytesReceived int64 `json:"bytesReceived"`
	Requests      int64 `json:"requests"`
}

// Server serves the speed-test endpoints. Create it with New.
type Server struct {
	log     *events.Log
	pattern []byte
	sent    atomic.Int64
	recv    atomic.Int64
	reqs    atomic.Int64
	mux     *http.ServeMux
}

var randomPath = regexp.MustCompile(`^/speedtest/random(\d+)x(\d+)\.jpg$`)

// New returns a server that records what it serves in log (nil: nowhere).
func New(log *events.Log) *Server {
	s := &Server{log: log, pattern: make([]byte, 1<<16)}
	// Random bytes so no compressing middlebox flatters the rate.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range s.pattern {
		s.pattern[i] = byte(r.Uint32())
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /speedtest/latency.txt", s.latency)
	s.mux.HandleFunc("POST /speedtest/upload.php", s.upload)
	s.mux.HandleFunc("GET /stats", s.stats)
	s.mux.HandleFunc("GET /speedtest/", s.random)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.reqs.Add(1)
	s.mux.ServeHTTP(w, r)
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{BytesSent: s.sent.Load(), BytesReceived: s.recv.Load(), Requests: s.reqs.Load()}
}

func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func (s *Server) latency(w http.ResponseWriter, r *http.Request) {
	const body = "test=test\n"
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	n, _ := io.WriteString(w, body)
	s.sent.Add(int64(n))
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 256<<20))
	s.recv.Add(n)
	if err != nil {
		s.log.Emit("upload-failed", "remote", remoteIP(r), "bytes", n, "err", err.Error())
		return
	}
	fmt.Fprintf(w, "size=%d", n)
	s.log.Emit("received", "path", r.URL.Path, "remote", remoteIP(r), "bytes", n, "ms", time.Since(start).Milliseconds())
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Stats())
}

func (s *Server) random(w http.ResponseWriter, r *http.Request) {
	m := randomPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	if a < 1 || b < 1 || a > MaxSide || b > MaxSide {
		http.Error(w, fmt.Sprintf("size %dx%d out of range 1..%d", a, b, MaxSide), http.StatusBadRequest)
		return
	}
	size := int64(a) * int64(b) * 2
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	// ServeContent answers Range requests, which is what lets a probe ask
	// for exactly the bytes its budget allows.
	http.ServeContent(cw, r, "", time.Time{}, &patternReader{pattern: s.pattern, size: size})
	s.sent.Add(cw.n)
	s.log.Emit("served", "path", r.URL.Path, "range", r.Header.Get("Range"), "remote", remoteIP(r), "bytes", cw.n, "ms", time.Since(start).Milliseconds())
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// patternReader is a virtual file of size bytes repeating pattern.
type patternReader struct {
	pattern []byte
	size    int64
	off     int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	if rem := p.size - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	n := 0
	for n < len(b) {
		i := int((p.off + int64(n)) % int64(len(p.pattern)))
		n += copy(b[n:], p.pattern[i:])
	}
	p.off += int64(n)
	return n, nil
}

func (p *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.size
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek before start")
	}
	p.off = offset
	return offset, nil
}
