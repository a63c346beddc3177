// Package gate is the speed gate: it measures the link to a speed-test
// server and says whether it is good enough for the workload — open, closed
// or unknown — with hysteresis so it does not flap at the edge, and fails
// closed when it cannot measure.
//
// Probing is budgeted. A full speedtest-go test (rate × 10 s in each
// direction) runs only when cheap probes say the link has become good: at
// start and before every reopening, so the gate never opens on a probe
// alone. Closing needs no full test (closing is always safe), which is
// what keeps detection within a few seconds. In steady state the gate sends bounded-byte probes — one
// latency.txt round trip and a Range request for a few tens of milliseconds'
// worth of the open threshold — sized and spaced so that probing stays
// within a byte budget (by default 2% of the measured capacity). Transfers
// the workload reports (Observe) count as free measurements and skip probes.
// A probe that reads below the threshold is confirmed at once by a probe of
// twice the size, so a drop closes the gate within about one interval.
//
// Use New, run Run in a goroutine, and ask State, Wait or Subscribe.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/units"
)

// Auto is the Server value that picks one of Ookla's public servers.
const Auto = "auto"

// Config configures a gate. Zero values take the documented defaults.
type Config struct {
	// Server is the speed-test server's base URL (http://host:port), or
	// Auto for Ookla's public list (needs the internet).
	Server string
	// Dial dials the server (nil: a plain dialer that resolves with the
	// system's resolver); edgeguard's --dns gives one that resolves with a
	// server of its choice and falls back to the last good answer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MinDownload is the download rate below which the gate closes.
	MinDownload units.Rate
	// MaxLatency, when set, closes the gate above this round trip.
	MaxLatency time.Duration
	// MinUpload, when set, is checked by small upload probes and by the
	// full test's upload (which is unreliable at low rates: a failed
	// upload measurement keeps the gate from opening).
	MinUpload units.Rate
	// Hysteresis is the margin to reopen: the gate closes below
	// MinDownload and opens only at MinDownload × (1+Hysteresis) (latency:
	// closes above MaxLatency, opens below MaxLatency / (1+Hysteresis)).
	// Default 0.2.
	Hysteresis float64
	// FailOpen treats an unknown state as open for Wait and IsOpen. The
	// state itself still reads unknown. Default false: fail closed.
	FailOpen bool
	// Interval is the shortest time between steady-state probes; the
	// budget may stretch it. Default 2s.
	Interval time.Duration
	// BudgetFraction is the share of the measured capacity probes may
	// use (default 0.02); BudgetBytesPerSec, when set, is an absolute
	// budget instead.
	BudgetFraction    float64
	BudgetBytesPerSec float64
	// ProbeWindow sizes a probe: the bytes the reopen rate moves in this
	// time or in two round trips, whichever is longer (at least
	// MinProbe). Default 50ms.
	ProbeWindow time.Duration
	// FullDuration is how long the full test measures each direction
	// (speedtest-go's capture time). Default 10s. NoFullTest skips full
	// tests altogether (probes decide alone).
	FullDuration time.Duration
	NoFullTest   bool
	// ConfirmDuration is how long the full test that confirms an opening
	// (the first at start too) measures each direction (default 2s, at
	// most FullDuration). Shorter opens sooner and costs less, and a
	// fleet starting together does not run its long tests all at once;
	// it reads a long-delay link's rate lower (TCP's ramp is a larger
	// part of it), so a confirmation that reads between the close and
	// reopen marks, or below them before any test had measured the link,
	// is followed at once by one of FullDuration before the gate backs
	// off.
	ConfirmDuration time.Duration
	// ConfirmSpread is the longest random pause before a confirmation
	// (default 500ms). A region whose links return together otherwise
	// tests the speed server all at once: on a shared server (or a
	// loaded test machine) each test then reads a share of it, reads the
	// link slow, and backs its gate off. A few seconds spread the herd at
	// the cost of as much reopening time.
	ConfirmSpread time.Duration
	// Site, when set, is the runtimes sharing this uplink
	// (*site.Coordinator): a slow reading while the site flushes is
	// measured again in a moment of quiet before it counts, and reopenings
	// are confirmed in one, so a flush never closes a gate or spoils its
	// confirmation.
	Site Site
	// CloseAfter and OpenAfter are the consecutive bad (good) verdicts
	// that change the state. Defaults 2 and 2.
	CloseAfter, OpenAfter int

	Node   string
	Events *events.Log
	Logger *slog.Logger
}

// Site is what the gate asks of the runtimes it shares its uplink with.
type Site interface {
	// Flushing says whether any of them (this one's forwarder included)
	// is flushing now.
	Flushing() bool
	// Quiet asks all of them to hold their flushes for d; QuietDone ends
	// it early.
	Quiet(d time.Duration)
	QuietDone()
	// Shared says whether there are other runtimes behind the uplink.
	Shared() bool
	// PeerQuietUntil is when the quiets other runtimes asked for end:
	// their gates measure until then, and what this one reads is not the
	// link; PeerQuietDuring says whether one overlapped [from, to].
	PeerQuietUntil() time.Time
	PeerQuietDuring(from, to time.Time) bool
	// Confirmed tells the others this gate's full test confirmed the
	// uplink at bps; PeerConfirmed is the latest such word from another.
	Confirmed(bps float64)
	PeerConfirmed() (bps float64, at time.Time)
}

// MinProbe is the smallest download probe: below it, the first round trips
// of TCP slow start dominate whatever the link's rate.
const MinProbe = 32 << 10

func (c *Config) defaults() {
	if c.Hysteresis == 0 {
		c.Hysteresis = 0.2
	}
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
	}
	if c.BudgetFraction == 0 && c.BudgetBytesPerSec == 0 {
		c.BudgetFraction = 0.02
	}
	if c.ProbeWindow == 0 {
		c.ProbeWindow = 50 * time.Millisecond
	}
	if c.FullDuration == 0 {
		c.FullDuration = 10 * time.Second
	}
	if c.ConfirmDuration == 0 {
		c.ConfirmDuration = 2 * time.Second
	}
	c.ConfirmDuration = min(c.ConfirmDuration, c.FullDuration)
	if c.ConfirmSpread == 0 {
		c.ConfirmSpread = 500 * time.Millisecond
	}
	if c.CloseAfter == 0 {
		c.CloseAfter = 2
	}
	if c.OpenAfter == 0 {
		c.OpenAfter = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first problem with c, naming the field.
func (c *Config) Validate() error {
	if c.Server == "" {
		return errors.New("no speed-test server: give --server http://host:port (or --server auto for Ookla's public list)")
	}
	if c.Server != Auto {
		if _, err := ParseServer(c.Server); err != nil {
			return err
		}
	}
	if c.MinDownload == 0 {
		return errors.New("no download threshold: give --min-download with a unit, e.g. 5mbit")
	}
	switch {
	case c.Hysteresis < 0 || c.Hysteresis > 1:
		return fmt.Errorf("hysteresis %.0f%% out of range: 0%% to 100%%", c.Hysteresis*100)
	case c.MaxLatency < 0:
		return fmt.Errorf("max latency %s is negative", c.MaxLatency)
	case c.Interval < 0:
		return fmt.Errorf("probe interval %s is negative", c.Interval)
	case c.BudgetFraction < 0 || c.BudgetFraction > 1:
		return fmt.Errorf("probe budget %.1f%% out of range: 0%% to 100%% of capacity", c.BudgetFraction*100)
	case c.BudgetBytesPerSec < 0:
		return fmt.Errorf("probe budget %v B/s is negative", c.BudgetBytesPerSec)
	case c.FullDuration < 0:
		return fmt.Errorf("full test duration %s is negative", c.FullDuration)
	case c.ConfirmDuration < 0:
		return fmt.Errorf("confirmation duration %s is negative", c.ConfirmDuration)
	case c.ConfirmSpread < 0 || c.ConfirmSpread > time.Minute:
		return fmt.Errorf("confirmation spread %s is out of range: 0 to 1m", c.ConfirmSpread)
	case c.CloseAfter < 0 || c.OpenAfter < 0:
		return errors.New("close-after and open-after must be at least 1")
	}
	return nil
}

// ParseServer checks a speed-test server URL and returns its base
// (scheme://host[:port]); a path ending in /speedtest/... is dropped.
func ParseServer(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("speed-test server %q is not an http(s) URL: write e.g. http://100.64.0.1:8080", s)
	}
	return baseOf(s), nil
}

func baseOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	p := u.Path
	if i := strings.Index(p, "/speedtest"); i >= 0 {
		p = p[:i]
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(p, "/")
}

// Gate is a running speed gate. Its methods are safe for concurrent use.
type Gate struct {
	cfg         Config
	meter       meter
	wake        chan struct{} // a passive sample asks for a probe now
	mu          sync.Mutex
	st          wire.GateStatus
	change      chan struct{} // closed and replaced on every state change
	good        int
	bad         int
	fails       int
	lastFull    time.Time
	lastPassive time.Time
	lastProbe   time.Time
	lastProbeUp float64 // bits/s, the last upload probe
	failRun     int     // failed probes in a row
	// fullNotBefore holds off the next full test after one that did not
	// open the gate; fullBackoff is the current hold-off.
	fullNotBefore time.Time
	fullBackoff   time.Duration
	// probeDown is the last probe's download reading; heldAt is the one
	// that led to the full test that set the hold: probes reading the link
	// far faster since say it has changed, and lift the hold.
	probeDown, heldAt float64
	rtt               time.Duration
	// lastProbeBytes is what the last regular probe moved (meter).
	lastProbeBytes int64
	rtts           []time.Duration // recent round trips, newest last
	lastBudgetWarn time.Time
}

// New checks cfg and returns a gate in the unknown state. Call Run.
func New(cfg Config) (*Gate, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gate{cfg: cfg, wake: make(chan struct{}, 1), change: make(chan struct{})}
	g.st = wire.GateStatus{Node: cfg.Node, State: wire.Unknown, Since: time.Now().UTC(), Reason: "not measured yet", Server: cfg.Server, FailOpen: cfg.FailOpen}
	g.st.Threshold.MinDownloadBps = float64(cfg.MinDownload)
	g.st.Threshold.MaxLatency = cfg.MaxLatency
	g.st.Threshold.MinUploadBps = float64(cfg.MinUpload)
	g.st.Threshold.Hysteresis = cfg.Hysteresis
	g.st.Interval = cfg.Interval
	return g, nil
}

// State is the current state.
func (g *Gate) State() wire.GateState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.st.State
}

// IsOpen reports whether the workload may use the link.
func (g *Gate) IsOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.st.Open
}

// Status is a copy of the status document.
func (g *Gate) Status() wire.GateStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.st
	s.Measurements = append([]wire.Measurement(nil), g.st.Measurements...)
	s.ProbeBytes = g.meter.n.Load()
	return s
}

// Wait blocks until the gate is open (or unknown with FailOpen) or ctx ends.
func (g *Gate) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		open, ch := g.st.Open, g.change
		g.mu.Unlock()
		if open {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Subscribe sends the current status and then every state change until ctx
// ends, when the channel is closed. A slow reader misses intermediate
// changes but always gets the latest.
func (g *Gate) Subscribe(ctx context.Context) <-chan wire.GateStatus {
	out := make(chan wire.GateStatus, 1)
	go func() {
		defer close(out)
		var seen uint64 = math.MaxUint64
		for {
			g.mu.Lock()
			ch := g.change
			g.mu.Unlock()
			if s := g.Status(); s.Seq != seen {
				seen = s.Seq
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
	return out
}

// Observe records a transfer the workload made over the same link (bytes
// received in d). Transfers at least as large as a probe are free
// measurements: a fast one stands in for the next probe while the gate is
// open; a slow one at least twice a probe's size (smaller ones read slow on
// any long round trip, slow start being most of them) asks for a probe now,
// at most one per half interval. Smaller transfers are ignored.
func (g *Gate) Observe(bytes int64, d time.Duration) {
	if d <= 0 {
		return
	}
	bps := float64(bytes) * 8 / d.Seconds()
	m := wire.Measurement{Time: time.Now().UTC(), Kind: "passive", DownloadBps: bps}
	g.mu.Lock()
	defer g.mu.Unlock()
	size := g.probeSize()
	switch {
	case bytes < size:
		return
	case bps >= g.openDown():
		m.Verdict, g.lastPassive = "good", time.Now()
	case bps < float64(g.cfg.MinDownload) && bytes >= 2*size:
		m.Verdict = "bad"
		select {
		case g.wake <- struct{}{}:
		default:
		}
	default:
		m.Verdict = "band"
	}
	g.recordLocked(m)
}

func (g *Gate) openDown() float64 { return float64(g.cfg.MinDownload) * (1 + g.cfg.Hysteresis) }
func (g *Gate) openUp() float64   { return float64(g.cfg.MinUpload) * (1 + g.cfg.Hysteresis) }

func (g *Gate) recordLocked(m wire.Measurement) {
	const keep = 20
	if n := len(g.st.Measurements); n > 0 && m.Kind == "passive" && g.st.Measurements[n-1].Kind == "passive" {
		// A run of workload samples keeps only its latest, so they do not
		// push the probes and full tests out of the list.
		g.st.Measurements[n-1] = m
		return
	}
	g.st.Measurements = append(g.st.Measurements, m)
	if n := len(g.st.Measurements); n > keep {
		g.st.Measurements = append([]wire.Measurement(nil), g.st.Measurements[n-keep:]...)
	}
}

// setLocked changes the state and announces it.
func (g *Gate) setLocked(s wire.GateState, reason string) {
	if g.st.State == s {
		g.st.Reason = reason
		return
	}
	from := g.st.State
	g.st.State, g.st.Reason, g.st.Since = s, reason, time.Now().UTC()
	// Fail-open applies to a gate that tried and could not measure, not to
	// one that has not tried yet: a startup hold still holds.
	g.st.Open = s == wire.Open || (s == wire.Unknown && g.cfg.FailOpen && g.fails > 0)
	g.st.Seq++
	close(g.change)
	g.change = make(chan struct{})
	g.cfg.Events.Emit(string(s), "from", string(from), "reason", reason, "probeBytes", g.meter.n.Load())
	lvl := slog.LevelInfo
	if s != wire.Open {
		lvl = slog.LevelWarn
	}
	g.cfg.Logger.Log(context.Background(), lvl, "gate "+string(s), "from", from, "reason", reason, "server", g.cfg.Server)
}

// Changed returns a channel closed at the next state change.
func (g *Gate) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.change
}

// Capacity is the upstream rate the gate measured, in bits per second:
// the last upload measurement when there is one (--min-upload), else the
// last full test's download, the best guess on a symmetric link; 0 before
// any. The buffer's forwarder, which sends upstream, paces its flush by it.
func (g *Gate) Capacity() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lastProbeUp > 0 {
		return g.lastProbeUp
	}
	return g.st.CapacityBps
}
