// Package workload holds the sample edge workloads the harness deploys to
// show the runtime at work. Fetch is the talk's speed-limited workload: it
// downloads a page from the cloud's content server every period while the
// speed gate is open, stops (cancelling a transfer in flight) as soon as
// the gate closes, resumes when it reopens, and logs everything it did.
package workload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
)

// Link is what a workload asks before it uses the network: the in-process
// gate (*gate.Gate) and a served one (*gate.Remote) both satisfy it.
type Link interface {
	IsOpen() bool
	Wait(ctx context.Context) error
	Changed() <-chan struct{}
}

// Observer takes the workload's transfers as free link measurements.
type Observer interface {
	Observe(bytes int64, d time.Duration)
}

// Fetch is the fetching workload. URL and Link are required.
type Fetch struct {
	URL    string
	Period time.Duration // default 5s
	Node   string
	Link   Link
	Events *events.Log
	Logger *slog.Logger
	Client *http.Client // default: a client of its own
	// Timeout bounds one fetch (default 30 s): a transfer stalled by a
	// dead link is given up and retried, as any real client would.
	Timeout time.Duration
}

// Run fetches until ctx ends.
func (f Fetch) Run(ctx context.Context) error {
	if f.URL == "" || f.Link == nil {
		return fmt.Errorf("workload fetch needs a content URL and a gate")
	}
	if f.Period <= 0 {
		f.Period = 5 * time.Second
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	if f.Timeout <= 0 {
		f.Timeout = 30 * time.Second
	}
	if f.Client == nil {
		f.Client = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: f.Timeout}
	}
	obs, _ := f.Link.(Observer)
	for ctx.Err() == nil {
		if !f.Link.IsOpen() {
			f.Events.Emit("paused")
			f.Logger.Info("gate not open: paused")
			if err := f.Link.Wait(ctx); err != nil {
				return nil
			}
			f.Events.Emit("resumed")
			f.Logger.Info("gate open: resumed")
		}
		n, d, err := f.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			f.Events.Emit("fetched", "bytes", n, "ms", d.Milliseconds())
			if obs != nil {
				obs.Observe(n, d)
			}
		case !f.Link.IsOpen():
			f.Events.Emit("aborted", "bytes", n, "ms", d.Milliseconds(), "reason", "gate closed")
			continue
		default:
			f.Events.Emit("fetch-failed", "bytes", n, "err", err.Error())
			f.Logger.Warn("fetch failed", "url", f.URL, "err", err)
		}
		f.sleep(ctx)
	}
	return nil
}

// fetch downloads the page once, cancelled if the gate closes meanwhile.
func (f Fetch) fetch(ctx context.Context) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.Link.Changed():
				if !f.Link.IsOpen() {
					cancel()
					return
				}
			}
		}
	}()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("X-Edgefault-Node", f.Node)
	resp, err := f.Client.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("content server answered %s", resp.Status)
	}
	return n, time.Since(start), err
}

// sleep waits one period, or less if the gate closes (so the next loop
// pauses at once).
func (f Fetch) sleep(ctx context.Context) {
	t := time.NewTimer(f.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-f.Link.Changed():
			if !f.Link.IsOpen() {
				return
			}
		}
	}
}

// NoGate is a Link that is always open: a workload run with it ignores
// the link's condition, as an app without the runtime does. It exists to
// be compared with (edgeguard workload fetch --gate none).
type NoGate struct{}

// IsOpen is always true.
func (NoGate) IsOpen() bool { return true }

// Wait returns at once.
func (NoGate) Wait(context.Context) error { return nil }

// Changed never fires.
func (NoGate) Changed() <-chan struct{} { return nil }
