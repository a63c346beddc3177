package gate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
)

// Remote follows a gate served by another process (edgeguard serve) over
// its HTTP API: what a workload container or `edgeguard gate wait` uses. It
// is unknown (so not open) while the server cannot be reached.
type Remote struct {
	base   string
	c      *http.Client
	mu     sync.Mutex
	st     wire.GateStatus
	change chan struct{}
}

// NewRemote returns a client for the edgeguard serve at base
// (http://127.0.0.1:8474). Call Run to follow it.
func NewRemote(base string) (*Remote, error) {
	b, err := ParseServer(base)
	if err != nil {
		return nil, fmt.Errorf("gate address: %w", err)
	}
	r := &Remote{base: b, c: &http.Client{Transport: &http.Transport{DisableCompression: true}}, change: make(chan struct{})}
	r.st = wire.GateStatus{State: wire.Unknown, Reason: "not connected to " + b + " yet"}
	return r, nil
}

func (r *Remote) set(s wire.GateStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := s.Open != r.st.Open || s.State != r.st.State
	r.st = s
	if changed {
		close(r.change)
		r.change = make(chan struct{})
	}
}

// Status is the last status seen.
func (r *Remote) Status() wire.GateStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// IsOpen reports whether the served gate was open at last word.
func (r *Remote) IsOpen() bool { return r.Status().Open }

// Changed returns a channel closed at the next change of openness or state.
func (r *Remote) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.change
}

// Wait blocks until the served gate is open or ctx ends.
func (r *Remote) Wait(ctx context.Context) error {
	for {
		ch := r.Changed()
		if r.IsOpen() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Observe reports a transfer to the served gate (best effort).
func (r *Remote) Observe(bytes int64, d time.Duration) {
	b, _ := json.Marshal(map[string]any{"bytes": bytes, "seconds": d.Seconds()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/v1/gate/observe", bytesReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if resp, err := r.c.Do(req); err == nil {
		resp.Body.Close()
	}
}

// Run follows the server's event stream until ctx ends, reconnecting every
// second while it is unreachable.
func (r *Remote) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		s := r.Status()
		s.State, s.Open = wire.Unknown, false
		s.Reason = fmt.Sprintf("edgeguard serve at %s unreachable: %v", r.base, err)
		r.set(s)
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

// idle is how long the event stream may stay silent: the server sends a
// keep-alive every 15 s, so silence beyond this means it is gone or hung.
const idle = 45 * time.Second

func (r *Remote) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(idle, func() { cancel(fmt.Errorf("no word from %s for %s", r.base, idle)) })
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/gate/events", nil)
	if err != nil {
		return err
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("events answered %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		watchdog.Reset(idle)
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var s wire.GateStatus
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s); err != nil {
			return fmt.Errorf("bad event: %w", err)
		}
		r.set(s)
	}
	if c := context.Cause(ctx); c != nil {
		return c
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("event stream ended")
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Capacity is the served gate's last full-test rate (bits/s, 0: unknown).
func (r *Remote) Capacity() float64 { return r.Status().CapacityBps }
