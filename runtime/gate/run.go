package gate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
)

// Verdicts of one measurement against the thresholds.
const (
	vGood   = "good"   // at or above the open thresholds
	vBand   = "band"   // between the close and open thresholds: keep the state
	vBad    = "bad"    // below a close threshold
	vFailed = "failed" // no trustworthy measurement
)

// action is what the loop does after a verdict.
type action int

const (
	wait     action = iota // sleep one interval
	escalate               // confirm a bad reading now with a larger probe
	retry                  // a failure: try again soon
	full                   // run a full test now
)

// verdict judges one measurement against the thresholds.
func (g *Gate) verdict(down, up float64, lat time.Duration) (string, string) {
	c := g.cfg
	h := 1 + c.Hysteresis
	switch {
	case down < float64(c.MinDownload):
		return vBad, fmt.Sprintf("download %s below %s", fmtRate(down), c.MinDownload)
	case c.MaxLatency > 0 && lat > c.MaxLatency:
		return vBad, fmt.Sprintf("latency %s above %s", lat.Round(time.Millisecond), c.MaxLatency)
	case c.MinUpload > 0 && up < float64(c.MinUpload):
		return vBad, fmt.Sprintf("upload %s below %s", fmtRate(up), c.MinUpload)
	case down < g.openDown():
		return vBand, fmt.Sprintf("download %s under the reopen mark %s", fmtRate(down), fmtRate(g.openDown()))
	case c.MaxLatency > 0 && float64(lat) > float64(c.MaxLatency)/h:
		return vBand, fmt.Sprintf("latency %s over the reopen mark %s", lat.Round(time.Millisecond), time.Duration(float64(c.MaxLatency)/h).Round(time.Millisecond))
	case c.MinUpload > 0 && up < g.openUp():
		return vBand, fmt.Sprintf("upload %s under the reopen mark %s", fmtRate(up), fmtRate(g.openUp()))
	}
	return vGood, fmt.Sprintf("download %s, latency %s", fmtRate(down), lat.Round(time.Millisecond))
}

func fmtRate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.2fmbit", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1fkbit", bps/1e3)
	}
	return fmt.Sprintf("%.0fbit", bps)
}

// stepLocked applies a probe's verdict to the counters and the state, and
// says what to do next. Bad and failed readings count together: a link
// that alternates between them is not a good link. After CloseAfter of
// them in a row the gate is closed if any was bad (the link was measured
// slow), unknown if all failed. It holds g.mu.
func (g *Gate) stepLocked(v, reason string) action {
	s := g.st.State
	switch v {
	case vFailed, vBad:
		g.good = 0
		if v == vBad {
			g.bad++
		} else {
			g.fails++
		}
		if g.bad+g.fails < g.cfg.CloseAfter && s != wire.Closed {
			if v == vBad {
				return escalate
			}
			return retry
		}
		if g.bad > 0 {
			g.setLocked(wire.Closed, reason)
		} else {
			g.setLocked(wire.Unknown, reason)
		}
		return wait
	case vBand:
		g.good, g.bad, g.fails = 0, 0, 0
		if s == wire.Unknown {
			// Measurable but not good enough to open: fail closed.
			g.setLocked(wire.Closed, reason)
		}
		return wait
	}
	g.bad, g.fails = 0, 0
	g.good++
	if s == wire.Open {
		return wait
	}
	if g.good < g.cfg.OpenAfter {
		return retry
	}
	if !g.cfg.NoFullTest {
		if time.Now().Before(g.fullNotBefore) {
			if g.heldAt > 0 && g.probeDown >= linkChanged*g.heldAt {
				// The probes read the link far faster than when the held
				// test ran: a restored link, not the same disagreement.
				g.cfg.Events.Emit("fulltest-hold-lifted", "heldAtBps", int64(g.heldAt), "downloadBps", int64(g.probeDown))
				g.fullBackoff, g.fullNotBefore = 0, time.Time{}
				return full
			}
			// The last full test did not confirm what the probes said:
			// do not run another before its back-off ends.
			g.good = 0
			return wait
		}
		return full
	}
	g.setLocked(wire.Open, reason)
	return wait
}

// linkChanged is how much faster than before the probes must read a link
// for a full test's hold to be lifted.
const linkChanged = 4

// probeSize is the download probe: what the reopen rate moves in the probe
// window or in two base round trips, whichever is longer, and at least
// MinProbe. Two round trips' worth makes the second half of the probe
// arrive in a flight of about one bandwidth-delay product of that rate, so
// its rate (see download) reads about the reopen mark or more on any link
// that is faster; a low reading is confirmed by a probe twice the size
// before the gate closes, so slow start alone never closes it.
func (g *Gate) probeSize() int64 {
	w := max(g.cfg.ProbeWindow, 2*g.baseRTT())
	n := int64(g.openDown() / 8 * w.Seconds())
	return min(max(n, MinProbe), 64<<20)
}

// budgetBps is the probe budget in bytes per second.
func (g *Gate) budgetBps() float64 {
	if g.cfg.BudgetBytesPerSec > 0 {
		return g.cfg.BudgetBytesPerSec
	}
	capacity := g.st.CapacityBps
	if capacity == 0 {
		capacity = g.openDown()
	}
	return g.cfg.BudgetFraction * capacity / 8
}

// interval is the steady-state period: Interval, stretched so one probe
// per period fits the budget.
func (g *Gate) interval() time.Duration {
	// What a probe costs on the wire: its payload and requests (or what
	// the last one really moved, if more), plus Ethernet/IP/TCP headers
	// and ACK frames (about 7% at a 1448-byte MSS), so the budget holds on
	// the wire.
	cost := max(float64(g.probeSize()+g.uploadSize())+1500, float64(g.lastProbeBytes)) * 1.08
	iv := g.cfg.Interval
	if b := g.budgetBps(); b > 0 {
		if need := time.Duration(cost / b * float64(time.Second)); need > iv {
			iv = need
		}
	}
	return iv
}

func (g *Gate) uploadSize() int64 {
	if g.cfg.MinUpload == 0 {
		return 0
	}
	w := max(g.cfg.ProbeWindow, 2*g.baseRTT())
	return max(int64(g.openUp()/8*w.Seconds()), MinProbe)
}

// baseRTT is the smallest of the recent round trips: the path's delay
// without a one-off queue or scheduling hiccup.
func (g *Gate) baseRTT() time.Duration {
	var b time.Duration
	for i, r := range g.rtts {
		if i == 0 || r < b {
			b = r
		}
	}
	return b
}

func (g *Gate) pingTimeout() time.Duration {
	return min(max(4*g.rtt, 2*g.cfg.MaxLatency, time.Second), 10*time.Second)
}

// probe runs one bounded-byte probe of size bytes (0: the usual size).
func (g *Gate) probe(ctx context.Context, c *http.Client, base string, size int64) (m wire.Measurement, err error) {
	g.mu.Lock()
	if size == 0 {
		size = g.probeSize()
	}
	up := g.uploadSize()
	pt := g.pingTimeout()
	g.mu.Unlock()
	m = wire.Measurement{Kind: "probe"}
	before := g.meter.n.Load()
	defer func() { m.Bytes = g.meter.n.Load() - before }()
	pctx, cancel := context.WithTimeout(ctx, pt)
	rtt, err := ping(pctx, c, base)
	timedOut := errors.Is(pctx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		if timedOut && ctx.Err() == nil {
			err = fmt.Errorf("no answer from %s within %s", base, pt)
		}
		return m, err
	}
	m.Latency = rtt
	g.mu.Lock()
	g.rtt = rtt
	if g.rtts = append(g.rtts, rtt); len(g.rtts) > 8 {
		g.rtts = g.rtts[1:]
	}
	g.mu.Unlock()
	// What the close threshold needs, plus slow start's round trips and
	// some slack: a probe still running then is on a link slower than the
	// threshold whatever the rest would show, and the bytes that did
	// arrive are the measurement.
	rounds := math.Log2(float64(size)/14600) + 3
	deadline := time.Duration(float64(size)*8/float64(g.cfg.MinDownload)*1.25*float64(time.Second)) + time.Duration(rounds*float64(rtt)) + 300*time.Millisecond
	bps, _, cut, err := download(ctx, c, base, size, deadline)
	if err != nil {
		return m, err
	}
	m.DownloadBps, m.Cut = bps, cut
	if up > 0 {
		udl := time.Duration(float64(up)*8/float64(g.cfg.MinUpload)*3*float64(time.Second)) + 2*rtt + time.Second
		ubps, err := upload(ctx, c, base, up, rtt, udl)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				ubps, err = 0, nil // too slow to finish: below any threshold
			} else {
				return m, err
			}
		}
		m.UploadBps = ubps
	}
	return m, nil
}

// Run measures until ctx ends. It returns nil on cancellation and an error
// only when the gate cannot run at all (--server auto with no internet is
// not such an error: the gate stays unknown and keeps trying).
func (g *Gate) Run(ctx context.Context) error {
	c := newClient(&g.meter, g.cfg.Dial)
	defer c.CloseIdleConnections()
	base := g.cfg.Server
	if base == Auto {
		for {
			u, err := autoServer(ctx, c)
			if err == nil {
				base = u
				break
			}
			g.mu.Lock()
			g.fails++
			g.setLocked(wire.Unknown, err.Error())
			g.mu.Unlock()
			g.cfg.Logger.Warn("gate cannot pick a public speed-test server", "err", err)
			if !sleep(ctx, 30*time.Second) {
				return nil
			}
		}
	} else {
		base, _ = ParseServer(base)
	}
	g.mu.Lock()
	g.st.Server = base
	g.mu.Unlock()

	var size int64
	quieted := false // the site holds its flush for this probe
	for ctx.Err() == nil {
		if g.cfg.Server == Auto && g.failStreak() >= 10 {
			// The public server chosen at start has stopped answering:
			// choose again.
			if u, err := autoServer(ctx, c); err == nil && u != base {
				g.cfg.Logger.Warn("gate switches public speed-test server", "from", base, "to", u)
				base = u
				g.mu.Lock()
				g.st.Server = base
				g.mu.Unlock()
			}
		}
		// A neighbour's gate measuring fills the uplink: wait it out, and
		// do not judge a reading it overlapped. Not in this gate's own
		// quiet: the site is quiet for both, and waiting would outlast it.
		if !quieted && !g.waitPeers(ctx) {
			return nil
		}
		started := time.Now()
		m, err := g.probe(ctx, c, base, size)
		if ctx.Err() != nil {
			return nil
		}
		inQuiet := quieted
		if quieted {
			g.cfg.Site.QuietDone()
			quieted = false
		}
		if !inQuiet && g.peerOverlap(started, time.Now()) {
			g.cfg.Events.Emit("probe-discarded", "why", "a neighbour's gate measured meanwhile")
			// Within the budget's spacing all the same.
			if !sleep(ctx, min(g.intervalLocked(), 500*time.Millisecond)) {
				return nil
			}
			continue
		}
		escalated := size != 0
		size = 0
		var act action
		g.mu.Lock()
		g.lastProbe = time.Now()
		m.Time = time.Now().UTC()
		if err != nil {
			m.Verdict, m.Error = vFailed, err.Error()
			m.Reason = fmt.Sprintf("cannot measure against %s: %v", base, err)
			if errors.Is(err, errGarbage) {
				m.Reason += " (is --server a speed-test server? edgeguard speedserver serves one)"
			}
		} else {
			m.Verdict, m.Reason = g.verdict(m.DownloadBps, m.UploadBps, m.Latency)
			g.probeDown = m.DownloadBps
			if m.Cut {
				m.Reason += " (probe cut at its deadline)"
			}
			if m.UploadBps > 0 {
				g.lastProbeUp = m.UploadBps
			}
		}
		g.recordLocked(m)
		if m.Verdict == vFailed {
			g.failRun++
		} else {
			g.failRun = 0
		}
		if !escalated && m.Bytes > 0 {
			g.lastProbeBytes = m.Bytes
		}
		g.cfg.Events.Emit("probe", "verdict", m.Verdict, "downloadBps", int64(m.DownloadBps), "uploadBps", int64(m.UploadBps), "latencyMs", float64(m.Latency.Microseconds())/1000, "bytes", m.Bytes, "reason", m.Reason)
		if m.Verdict == vFailed {
			g.cfg.Logger.Warn("gate probe failed", "server", base, "err", err, "state", g.st.State)
			// The next probe dials anew: a kept-alive connection may lead
			// to the wrong server (a Service not yet routed when it was
			// dialled, a captive portal) or have died in an outage, and
			// reusing it would fail every probe after.
			c.CloseIdleConnections()
		}
		act = g.stepLocked(m.Verdict, m.Reason)
		iv := g.interval()
		g.st.Interval, g.st.ProbeBudget = iv, g.budgetBps()
		g.mu.Unlock()

		switch act {
		case escalate:
			// Confirm at once: twice the size, so slow start weighs less,
			// unless this one ran out of time (then the same size: a
			// bigger one would only take longer to say the same).
			size = 2 * g.probeSizeLocked()
			if m.Cut {
				size = g.probeSizeLocked()
			}
			// The site's flush may be what read slow: measure again
			// with it held.
			var ok bool
			if quieted, ok = g.quiet(ctx, g.probeTime(size), "a slow probe while the site flushes", false); !ok {
				return nil
			}
			continue
		case retry:
			if !sleep(ctx, min(iv, 500*time.Millisecond)) {
				return nil
			}
			continue
		case full:
			g.confirm(ctx, c, base)
		}
		if !g.waitNext(ctx) {
			return nil
		}
	}
	return nil
}

// failStreak counts failed probes in a row.
func (g *Gate) failStreak() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failRun
}

func (g *Gate) probeSizeLocked() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.probeSize()
}

// waitNext sleeps one interval, cut short by a slow passive sample, and
// skips probes while the workload's own fast transfers vouch for the link.
func (g *Gate) waitNext(ctx context.Context) bool {
	for {
		g.mu.Lock()
		iv := g.interval()
		g.mu.Unlock()
		t := time.NewTimer(iv)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-g.wake:
			t.Stop()
			g.mu.Lock()
			left := iv/2 - time.Since(g.lastProbe)
			g.mu.Unlock()
			// Not more than one extra probe per half interval, whatever
			// the workload reports.
			if left > 0 && !sleep(ctx, left) {
				return false
			}
			return true
		case <-t.C:
		}
		g.mu.Lock()
		// Workload transfers say nothing about latency or upload: they
		// stand in for probes only when download is all that is judged.
		vouched := g.st.State == wire.Open && time.Since(g.lastPassive) < iv && g.cfg.MaxLatency == 0 && g.cfg.MinUpload == 0
		g.mu.Unlock()
		if !vouched {
			return true
		}
	}
}

// quiet, when the site is flushing (or always, when the uplink is shared),
// asks it to hold for what the gate is about to measure (d, ended early by
// QuietDone) and waits for the flushes in flight to drain. It says whether
// it asked, and false for ok when ctx ended.
func (g *Gate) quiet(ctx context.Context, d time.Duration, why string, always bool) (asked, ok bool) {
	s := g.cfg.Site
	if s == nil || !(s.Flushing() || (always && s.Shared())) {
		return false, true
	}
	g.mu.Lock()
	// A batch in flight (a quarter second of the flush, or 256 KiB at
	// the measured rate), and two round trips for the queue to empty.
	settle := 400 * time.Millisecond
	if c := g.st.CapacityBps; c > 0 {
		settle = max(settle, time.Duration(256<<10*8/c*float64(time.Second)))
	}
	settle = min(settle+2*g.baseRTT(), 1500*time.Millisecond)
	g.mu.Unlock()
	s.Quiet(settle + d)
	g.cfg.Events.Emit("site-quiet-asked", "ms", (settle + d).Milliseconds(), "why", why)
	return true, sleep(ctx, settle)
}

func (g *Gate) intervalLocked() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.interval()
}

// peerConfirmFresh is how recent a neighbour's confirmation must be to
// open on it.
const peerConfirmFresh = 15 * time.Second

// openOnPeer opens the gate on a neighbour's confirmation of the shared
// uplink, made since this gate closed and within peerConfirmFresh, when
// it read above the reopen mark: this gate's own probes have already
// said good, and a second full test of the same uplink would only hold
// the site's flush longer. It says whether it opened.
func (g *Gate) openOnPeer() bool {
	if g.cfg.Site == nil {
		return false
	}
	bps, at := g.cfg.Site.PeerConfirmed()
	g.mu.Lock()
	defer g.mu.Unlock()
	if at.IsZero() || time.Since(at) > peerConfirmFresh || at.Before(g.st.Since) || bps < g.openDown() || g.st.State == wire.Open {
		return false
	}
	g.good, g.bad, g.fails = 0, 0, 0
	g.st.CapacityBps, g.lastFull = bps, time.Now()
	g.recordLocked(wire.Measurement{Time: time.Now().UTC(), Kind: "site", DownloadBps: bps, Verdict: vGood, Reason: "a neighbour's full test of the shared uplink"})
	g.cfg.Events.Emit("site-confirmed-open", "downloadBps", int64(bps))
	g.setLocked(wire.Open, fmt.Sprintf("a neighbour's full test confirmed the shared uplink at %s %s ago, and this node's probes read good", fmtRate(bps), time.Since(at).Round(100*time.Millisecond)))
	return true
}

// waitPeers waits while another runtime's gate measures the shared
// uplink (at most a few seconds: the site bounds a quiet); false when ctx
// ended.
func (g *Gate) waitPeers(ctx context.Context) bool {
	if g.cfg.Site == nil {
		return true
	}
	// Polled: a neighbour that is done early says so.
	waited := false
	for {
		left := time.Until(g.cfg.Site.PeerQuietUntil())
		if left <= 0 {
			// A moment for the neighbour's last transfer to clear.
			return !waited || sleep(ctx, 100*time.Millisecond)
		}
		waited = true
		if !sleep(ctx, min(left, 100*time.Millisecond)) {
			return false
		}
	}
}

// peerOverlap says whether a neighbour's measurement overlapped
// [from, to].
func (g *Gate) peerOverlap(from, to time.Time) bool {
	return g.cfg.Site != nil && g.cfg.Site.PeerQuietDuring(from, to)
}

// probeTime is about how long a probe of size bytes takes at the reopen
// rate, with its ping.
func (g *Gate) probeTime(size int64) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Duration(float64(size)*8/g.openDown()*float64(time.Second)) + 4*g.baseRTT() + 200*time.Millisecond
}

// confirm runs the full test that opens the gate: a short one
// (ConfirmDuration), in a moment of the site's quiet, after a random pause
// (up to ConfirmSpread) so that a region's gates do not all test at the
// same instant. A short one that reads between the thresholds (what a ramp
// cut short reads on a long-delay link), or below them before any test
// had measured the link, is followed at once by a full-length one.
func (g *Gate) confirm(ctx context.Context, c *http.Client, base string) {
	// Short, the first one too: a hundred stores starting (or returning)
	// together would otherwise run a hundred 10 s tests at once, each
	// reading a share of what the others leave. What a short test cannot
	// decide is measured again at full length below.
	g.mu.Lock()
	measured := !g.lastFull.IsZero()
	g.mu.Unlock()
	d := g.cfg.ConfirmDuration
	// One gate of the site measures at a time (each full test would
	// otherwise read a share of the uplink): wait for a neighbour's test,
	// then a random pause so that two waiting do not start together.
	for {
		if !g.waitPeers(ctx) || !sleep(ctx, rand.N(g.cfg.ConfirmSpread)) {
			return
		}
		if now := time.Now(); !g.peerOverlap(now, now) {
			break
		}
	}
	if g.openOnPeer() {
		return
	}
	// speedtest-go's download runs a little past its capture time; the
	// quiet ends when the test does.
	asked, ok := g.quiet(ctx, 2*d+2*time.Second, "confirming a reopening", true)
	if asked {
		defer g.cfg.Site.QuietDone()
	}
	if !ok {
		return
	}
	v := g.fullTest(ctx, c, base, d)
	if v == vGood && g.cfg.Site != nil {
		g.mu.Lock()
		bps := g.st.CapacityBps
		g.mu.Unlock()
		g.cfg.Site.Confirmed(bps)
	}
	// A reading between the marks is redone at full length; so is any
	// reading short of good before any test had measured the link (a long
	// round trip is a larger part of a short test).
	if v == vGood || v == vFailed || d == g.cfg.FullDuration || ctx.Err() != nil || (v == vBad && measured) {
		return
	}
	g.mu.Lock()
	g.fullBackoff, g.fullNotBefore = 0, time.Time{}
	g.mu.Unlock()
	// The quiet goes on (the site extends it, within its bound); the
	// deferred QuietDone ends it.
	if _, ok := g.quiet(ctx, 2*g.cfg.FullDuration+4*time.Second, "confirming a reopening at full length", true); ok {
		g.fullTest(ctx, c, base, g.cfg.FullDuration)
	}
}

// fullTest runs speedtest-go and applies its verdict directly: it is the
// strongest evidence the gate has. A full test that does not open the gate
// sets a back-off before the next one (its own cost at the probe budget,
// at least 30 s, doubling while it keeps failing to confirm, up to an
// hour), so a link the probes like and the full test does not never gets
// full tests back to back.
//
// It measures each direction for d and returns its verdict.
func (g *Gate) fullTest(ctx context.Context, c *http.Client, base string, d time.Duration) string {
	g.cfg.Events.Emit("fulltest-start", "server", base, "seconds", d.Seconds())
	before := g.meter.n.Load()
	withUp := g.cfg.MinUpload > 0
	// Bounded even if the link blackholes mid-test: ping, download, upload.
	limit := 15*time.Second + 2*d
	if withUp {
		limit += 2 * d
	}
	// A confirmation judges latency by the probes that led to it.
	var lat time.Duration
	g.mu.Lock()
	if d < g.cfg.FullDuration && len(g.rtts) > 0 {
		lat = g.rtts[len(g.rtts)-1]
	}
	g.mu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, limit)
	r, err := fullTest(fctx, c, &g.meter, base, d, withUp, lat)
	timedOut := errors.Is(fctx.Err(), context.DeadlineExceeded)
	cancel()
	if err == nil && r.latency <= 0 {
		err = errors.New("speedtest ping measured no latency")
	}
	if timedOut && ctx.Err() == nil {
		err = fmt.Errorf("full test did not finish within %s", limit)
	}
	m := wire.Measurement{Time: time.Now().UTC(), Kind: "full", DownloadBps: r.download, UploadBps: r.upload, Latency: r.latency, Bytes: g.meter.n.Load() - before}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ctx.Err() != nil {
		return vFailed
	}
	g.good, g.bad, g.fails = 0, 0, 0
	if err != nil {
		m.Verdict, m.Error, m.Reason = vFailed, err.Error(), "full test failed: "+err.Error()
		g.recordLocked(m)
		g.cfg.Events.Emit("fulltest", "verdict", m.Verdict, "err", err.Error(), "bytes", m.Bytes)
		g.cfg.Logger.Warn("gate full test failed", "server", base, "err", err)
		g.backOffLocked(m.Bytes)
		g.setLocked(g.st.State, m.Reason)
		return vFailed
	}
	up := r.upload
	if withUp && up == 0 {
		// speedtest-go's upload often measures nothing at low rates; the
		// bounded upload probe (reliable) then speaks for the upload.
		up = g.lastProbeUp
	}
	m.Verdict, m.Reason = g.verdict(r.download, up, r.latency)
	g.recordLocked(m)
	g.st.CapacityBps = r.download
	g.lastFull = time.Now()
	g.cfg.Events.Emit("fulltest", "verdict", m.Verdict, "downloadBps", int64(r.download), "uploadBps", int64(r.upload), "latencyMs", float64(r.latency.Microseconds())/1000, "bytes", m.Bytes)
	switch m.Verdict {
	case vGood:
		g.fullBackoff, g.fullNotBefore = 0, time.Time{}
		g.setLocked(wire.Open, "full test: "+m.Reason)
	case vBad:
		g.backOffLocked(m.Bytes)
		g.setLocked(wire.Closed, "full test: "+m.Reason)
	default:
		g.backOffLocked(m.Bytes)
		if g.st.State != wire.Open {
			g.setLocked(wire.Closed, "full test: "+m.Reason)
		}
	}
	return m.Verdict
}

func (g *Gate) backOffLocked(cost int64) {
	g.heldAt = g.probeDown
	next := max(30*time.Second, 2*g.fullBackoff)
	if b := g.budgetBps(); b > 0 {
		next = max(next, time.Duration(float64(cost)/b*float64(time.Second)))
	}
	g.fullBackoff = min(next, time.Hour)
	g.fullNotBefore = time.Now().Add(g.fullBackoff)
	g.st.Reason += fmt.Sprintf(" (next full test not before %s)", g.fullNotBefore.UTC().Format(time.TimeOnly))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
