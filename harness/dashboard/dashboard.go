// Package dashboard serves a live session (harness.Live) to a presenter's
// browser: a page, embedded in the binary (no CDN, no external fonts), and
// the JSON API and server-sent events it uses and nothing else.
//
// The API changes a root-run harness's qdiscs, so it is not open to any
// page the presenter's browser loads: every API call carries the
// session's token (printed in the URL at start), state-changing calls must
// come from the page's own origin (Origin checked) with a JSON body, the
// Host must be the server's (no DNS rebinding), and the server listens on
// loopback unless told otherwise. Bodies, times and event streams are
// bounded.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/edgefault/edgefault/harness"
)

//go:embed assets
var assets embed.FS

// Limits on what a client may ask of the server.
const (
	maxBody    = 16 << 10
	maxStreams = 16
	// streamEvery bounds how often a stream sends the state, and how
	// long it stays silent at most.
	streamMin, streamMax = 200 * time.Millisecond, time.Second
)

// Server is the dashboard of one live session.
type Server struct {
	live    *harness.Live
	token   string
	log     *slog.Logger
	streams chan struct{}
	hosts   map[string]bool // Host headers accepted (set by Serve)
}

// New makes the dashboard of live, with a fresh token.
func New(live *harness.Live, log *slog.Logger) (*Server, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{live: live, token: hex.EncodeToString(b), log: log, streams: make(chan struct{}, maxStreams), hosts: map[string]bool{}}, nil
}

// Token is the session's token.
func (s *Server) Token() string { return s.token }

// Listen listens on addr (loopback unless the caller says otherwise) and
// returns the listener and the page's URL, token included.
func (s *Server) Listen(addr string) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w (pick another --listen)", addr, err)
	}
	a := ln.Addr().(*net.TCPAddr)
	port := fmt.Sprint(a.Port)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	for _, h := range []string{net.JoinHostPort(host, port), net.JoinHostPort("localhost", port), net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)} {
		s.hosts[h] = true
	}
	if !a.IP.IsLoopback() && !a.IP.IsUnspecified() {
		s.hosts[net.JoinHostPort(a.IP.String(), port)] = true
	}
	if a.IP.IsUnspecified() {
		// Every address of this machine's (--public on 0.0.0.0).
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok {
					s.hosts[net.JoinHostPort(ipn.IP.String(), port)] = true
				}
			}
		}
	}
	return ln, "http://" + net.JoinHostPort(host, port) + "/?token=" + s.token, nil
}

// Serve serves the dashboard on ln until ctx ends or the session does.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.live.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler is the dashboard's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.Handle("GET /", files)
	mux.HandleFunc("GET /api/state", s.api(s.state))
	mux.HandleFunc("GET /api/events", s.api(s.events))
	mux.HandleFunc("POST /api/shape", s.api(s.action(func(r request) error { return s.live.Shape(r.Target, r.Shaping) })))
	mux.HandleFunc("POST /api/restore", s.api(s.action(func(r request) error { return s.live.Restore(r.Target) })))
	mux.HandleFunc("POST /api/step", s.api(s.action(func(r request) error {
		if r.Index == nil {
			return badRequest{errors.New(`give the step's "index"`)}
		}
		return s.live.Step(*r.Index)
	})))
	mux.HandleFunc("POST /api/play", s.api(s.action(func(request) error { return s.live.Play() })))
	mux.HandleFunc("POST /api/reset", s.api(s.action(func(request) error { return s.live.Reset() })))
	return s.guard(mux)
}

// guard refuses requests for another Host and sets what the page may do.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hosts[r.Host] { // none yet: Listen was not called, nothing is known
			http.Error(w, "unknown Host: open the URL edgefault printed", http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// The token is in the page's URL: never send it elsewhere.
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// api checks the token: an Authorization: Bearer header, or (for the
// event stream, which a browser opens without headers) a token parameter.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok && r.Method == http.MethodGet {
			got = r.URL.Query().Get("token")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgefault dashboard"`)
			writeError(w, http.StatusUnauthorized, "no or wrong token: open the URL edgefault printed (it carries the session's token)")
			return
		}
		h(w, r)
	}
}

// request is the body of an action.
type request struct {
	Target string `json:"target"`
	harness.Shaping
	Index *int `json:"index"`
}

// badRequest marks an error in what the client asked.
type badRequest struct{ error }

// action runs fn for a same-origin JSON request.
func (s *Server) action(fn func(request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			writeError(w, http.StatusForbidden, "actions come from the dashboard's own page (Origin "+o+" refused)")
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, "send JSON (Content-Type: application/json)")
			return
		}
		var req request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a request is at most %d bytes", maxBody))
				return
			}
			writeError(w, http.StatusBadRequest, "the request's JSON: "+err.Error())
			return
		}
		start := time.Now()
		if err := fn(req); err != nil {
			var br badRequest
			var in harness.InputError
			code := http.StatusInternalServerError // the shaper, the kernel
			switch {
			case errors.As(err, &br):
				code = http.StatusBadRequest
			case errors.As(err, &in):
				code = http.StatusUnprocessableEntity
			case errors.Is(err, harness.ErrPlaying):
				code = http.StatusConflict
			case errors.Is(err, harness.ErrSessionEnding):
				code = http.StatusServiceUnavailable
			}
			s.log.Warn("dashboard action refused", "path", r.URL.Path, "target", req.Target, "err", err)
			writeError(w, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "tookMs": time.Since(start).Milliseconds()})
	}
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.live.State())
}

// events streams the state as server-sent events: on every change, at
// most every streamMin and at least every streamMax.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("at most %d dashboards at once: close one", maxStreams))
		return
	}
	rc := http.NewResponseController(w)
	// The server's read timeout is for requests; a stream reads nothing
	// more and lasts.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	for {
		changed := s.live.Changed()
		b, err := json.Marshal(s.live.State())
		if err != nil {
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.live.Done():
			fmt.Fprint(w, "event: ended\ndata: {}\n\n")
			_ = rc.Flush()
			return
		case <-time.After(streamMin):
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-time.After(streamMax - streamMin):
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
