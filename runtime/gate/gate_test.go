package gate

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/speedserver"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/units"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no server", Config{MinDownload: units.Mbit}, "no speed-test server"},
		{"bad url", Config{Server: "100.64.0.1:8080", MinDownload: units.Mbit}, "not an http(s) URL"},
		{"ftp url", Config{Server: "ftp://x", MinDownload: units.Mbit}, "not an http(s) URL"},
		{"no threshold", Config{Server: "http://x:1"}, "--min-download"},
		{"negative budget", Config{Server: "http://x:1", MinDownload: units.Mbit, BudgetBytesPerSec: -1}, "negative"},
		{"budget fraction", Config{Server: "http://x:1", MinDownload: units.Mbit, BudgetFraction: 2}, "out of range"},
		{"hysteresis", Config{Server: "http://x:1", MinDownload: units.Mbit, Hysteresis: -0.1}, "hysteresis"},
		{"ok", Config{Server: "http://x:1/speedtest/upload.php", MinDownload: units.Mbit}, ""},
		{"auto", Config{Server: Auto, MinDownload: units.Mbit}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if b, _ := ParseServer("http://h:8080/speedtest/upload.php"); b != "http://h:8080" {
		t.Errorf("base = %q", b)
	}
}

func TestVerdictHysteresis(t *testing.T) {
	g, err := New(Config{Server: "http://x:1", MinDownload: 10 * units.Mbit, MaxLatency: 100 * time.Millisecond, Hysteresis: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		down float64
		lat  time.Duration
		want string
	}{
		{13e6, 10 * ms, vGood},
		{12e6, 83 * ms, vGood},
		{11e6, 10 * ms, vBand}, // above close, under reopen
		{13e6, 90 * ms, vBand}, // latency under close, over reopen
		{9.9e6, 10 * ms, vBad}, // below close
		{13e6, 101 * ms, vBad}, // latency above close
		{0, 0, vBad},
	} {
		if got, why := g.verdict(tc.down, 0, tc.lat); got != tc.want {
			t.Errorf("verdict(%v, %v) = %s (%s), want %s", tc.down, tc.lat, got, why, tc.want)
		}
	}
	gu, _ := New(Config{Server: "http://x:1", MinDownload: units.Mbit, MinUpload: units.Mbit})
	if got, _ := gu.verdict(5e6, 0, 0); got != vBad {
		t.Errorf("unmeasured upload = %s, want bad (never a pass)", got)
	}
}

func TestStateMachine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		start    wire.GateState
		verdicts []string
		want     wire.GateState
		last     action
	}{
		{"one bad reading escalates, stays open", wire.Open, []string{vBad}, wire.Open, escalate},
		{"confirmed bad closes", wire.Open, []string{vBad, vBad}, wire.Closed, wait},
		{"bad then good stays open", wire.Open, []string{vBad, vGood, vBad}, wire.Open, escalate},
		{"band keeps open", wire.Open, []string{vBand, vBand}, wire.Open, wait},
		{"band keeps closed", wire.Closed, []string{vBand, vBand}, wire.Closed, wait},
		{"band from unknown closes", wire.Unknown, []string{vBand}, wire.Closed, wait},
		{"two goods ask for a full test", wire.Closed, []string{vGood, vGood}, wire.Closed, full},
		{"good, band, good does not", wire.Closed, []string{vGood, vBand, vGood}, wire.Closed, retry},
		{"one failure retries", wire.Open, []string{vFailed}, wire.Open, retry},
		{"two failures: unknown", wire.Open, []string{vFailed, vFailed}, wire.Unknown, wait},
		{"failures from closed: unknown", wire.Closed, []string{vFailed, vFailed}, wire.Unknown, wait},
		{"bad and failed alternating closes", wire.Open, []string{vBad, vFailed}, wire.Closed, wait},
		{"failed then bad closes", wire.Open, []string{vFailed, vBad}, wire.Closed, wait},
		{"bad, failed, bad, failed never stays open", wire.Open, []string{vBad, vFailed, vBad, vFailed}, wire.Closed, wait},
		{"a good reading resets", wire.Open, []string{vBad, vGood, vFailed}, wire.Open, retry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := New(Config{Server: "http://x:1", MinDownload: units.Mbit})
			g.mu.Lock()
			g.setLocked(tc.start, "start")
			g.mu.Unlock()
			var a action
			for _, v := range tc.verdicts {
				a = g.stepLocked(v, "test")
			}
			if g.st.State != tc.want || a != tc.last {
				t.Fatalf("state %s action %d, want %s %d", g.st.State, a, tc.want, tc.last)
			}
			if g.IsOpen() != (tc.want == wire.Open) {
				t.Fatalf("IsOpen = %v in %s", g.IsOpen(), tc.want)
			}
		})
	}
	g, _ := New(Config{Server: "http://x:1", MinDownload: units.Mbit, NoFullTest: true})
	g.setLocked(wire.Closed, "start")
	g.stepLocked(vGood, "")
	if g.stepLocked(vGood, "") != wait || g.st.State != wire.Open {
		t.Fatalf("without full tests two goods open: %s", g.st.State)
	}
}

func TestFailOpen(t *testing.T) {
	g, _ := New(Config{Server: "http://x:1", MinDownload: units.Mbit, FailOpen: true})
	if g.State() != wire.Unknown || g.IsOpen() {
		t.Fatalf("fail-open before any attempt: state %s open %v; a startup hold must still hold", g.State(), g.IsOpen())
	}
	g.mu.Lock()
	g.setLocked(wire.Closed, "x")
	g.stepLocked(vFailed, "no answer")
	g.stepLocked(vFailed, "no answer")
	g.mu.Unlock()
	if g.State() != wire.Unknown || !g.IsOpen() {
		t.Fatalf("fail-open after failures: state %s open %v", g.State(), g.IsOpen())
	}
	g.mu.Lock()
	g.setLocked(wire.Closed, "x")
	g.mu.Unlock()
	if g.IsOpen() {
		t.Fatal("closed is never open")
	}
}

func TestPickServer(t *testing.T) {
	list := []candidate{
		{URL: "http://far", Name: "far", Distance: 900},
		{URL: "http://near-slow", Name: "near-slow", Distance: 10},
		{URL: "http://near-dead", Name: "near-dead", Distance: 5},
		{URL: "http://mid-fast", Name: "mid-fast", Distance: 50},
	}
	rtts := map[string]time.Duration{"http://far": time.Millisecond, "http://near-slow": 80 * time.Millisecond, "http://mid-fast": 20 * time.Millisecond}
	var asked []string
	rtt := func(_ context.Context, u string) (time.Duration, error) {
		asked = append(asked, u)
		if d, ok := rtts[u]; ok {
			return d, nil
		}
		return 0, errors.New("timeout")
	}
	got, d, err := pickServer(context.Background(), list, 3, rtt)
	if err != nil || got != "http://mid-fast" || d != 20*time.Millisecond {
		t.Fatalf("picked %s %v %v; want mid-fast (the fastest of the 3 nearest; far is never asked)", got, d, err)
	}
	if len(asked) != 3 {
		t.Fatalf("asked %v, want the 3 nearest", asked)
	}
	if _, _, err := pickServer(context.Background(), list[2:3], 3, rtt); err == nil || !strings.Contains(err.Error(), "near-dead") {
		t.Fatalf("all dead: %v", err)
	}
	if _, _, err := pickServer(context.Background(), nil, 3, rtt); err == nil {
		t.Fatal("empty list accepted")
	}
}

// paced serves the speed-test endpoints no faster than rate bits/s (0:
// unpaced), a server-side stand-in for a slow link in unit tests; the
// shaped-link tests are in e2e.
type paced struct {
	h    http.Handler
	rate atomic.Int64
}

type pacedWriter struct {
	http.ResponseWriter
	rate int64
}

func (p pacedWriter) Write(b []byte) (int, error) {
	if p.rate == 0 {
		return p.ResponseWriter.Write(b)
	}
	n := 0
	for n < len(b) {
		c := min(len(b)-n, 4096)
		w, err := p.ResponseWriter.Write(b[n : n+c])
		n += w
		if err != nil {
			return n, err
		}
		p.ResponseWriter.(http.Flusher).Flush()
		time.Sleep(time.Duration(float64(c*8) / float64(p.rate) * float64(time.Second)))
	}
	return n, nil
}

func (p pacedWriter) Flush() { p.ResponseWriter.(http.Flusher).Flush() }

func (p *paced) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.h.ServeHTTP(pacedWriter{ResponseWriter: w, rate: p.rate.Load()}, r)
}

func waitState(t *testing.T, g *Gate, want wire.GateState, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for s := range g.Subscribe(ctx) {
		if s.State == want {
			return time.Since(start)
		}
	}
	st := g.Status()
	t.Fatalf("gate %s (%s) after %s, want %s; measurements %+v", st.State, st.Reason, within, want, st.Measurements)
	return 0
}

func TestGateFollowsServerRate(t *testing.T) {
	p := &paced{h: speedserver.New(nil)}
	const fast = 200e6 // a fast link, not loopback's 10 Gbit/s (spares the CPU other tests time with)
	p.rate.Store(fast)
	srv := httptest.NewServer(p)
	defer srv.Close()
	g, err := New(Config{Server: srv.URL, MinDownload: 20 * units.Mbit, Interval: 200 * time.Millisecond, FullDuration: 500 * time.Millisecond, BudgetFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := g.Wait(wctx); err != nil {
		t.Fatalf("Wait on a fast server: %v (%+v)", err, g.Status())
	}
	wcancel()
	st := g.Status()
	full := 0
	for _, m := range st.Measurements {
		if m.Kind == "full" {
			full++
		}
	}
	if st.CapacityBps < 20e6 || st.ProbeBytes == 0 || full != 1 {
		t.Fatalf("after opening (want one full test): %+v", st)
	}
	p.rate.Store(4e6) // well under the 20mbit threshold
	took := waitState(t, g, wire.Closed, 15*time.Second)
	t.Logf("closed %s after the server slowed", took) // bound: 3x the 5 s target
	if g.IsOpen() {
		t.Fatal("closed gate reports open")
	}
	p.rate.Store(fast)
	waitState(t, g, wire.Open, 15*time.Second)
}

func TestGateUnknownOnGarbageOrSilence(t *testing.T) {
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>captive portal</html>")
	}))
	defer garbage.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more
	for name, url := range map[string]string{"garbage": garbage.URL, "unreachable": deadURL} {
		t.Run(name, func(t *testing.T) {
			g, err := New(Config{Server: url, MinDownload: units.Mbit, Interval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() { _ = g.Run(ctx); close(done) }()
			if err := g.Wait(ctx); err == nil {
				t.Fatal("Wait returned on a server that cannot be measured")
			}
			<-done
			st := g.Status()
			if st.State != wire.Unknown || st.Open || len(st.Measurements) < 2 {
				t.Fatalf("status %+v", st)
			}
			m := st.Measurements[len(st.Measurements)-1]
			want := map[string]string{"garbage": "not a speed-test server", "unreachable": "connection refused"}[name]
			if m.Verdict != vFailed || !strings.Contains(m.Reason, want) {
				t.Fatalf("last measurement %+v, want a failure naming %q", m, want)
			}
			t.Log(m.Reason)
		})
	}
}

// A failed probe drops its kept-alive connection: a first connection that
// reached the wrong server (here: one that answers 404, as a Service not yet
// routed might) does not fail every probe after it.
func TestGateRedialsAfterAFailedProbe(t *testing.T) {
	type connKey struct{}
	var conns atomic.Int64
	h := speedserver.New(nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(connKey{}).(int64) == 1 {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, conns.Add(1))
	}
	srv.Start()
	defer srv.Close()
	g, err := New(Config{Server: srv.URL, MinDownload: units.Mbit, Interval: 100 * time.Millisecond, FullDuration: 300 * time.Millisecond, BudgetFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := g.Wait(ctx); err != nil {
		t.Fatalf("the gate never opened past a first connection that answered 404: %v (%+v)", err, g.Status())
	}
	first := g.Status().Measurements[0]
	if first.Verdict != vFailed || !strings.Contains(first.Reason, "404") {
		t.Fatalf("first measurement %+v, want the 404 on the first connection", first)
	}
}

// A full test that does not confirm what the probes say holds off the next
// one: the gate never falls back into back-to-back full tests.
func TestFullTestBackoff(t *testing.T) {
	g, _ := New(Config{Server: "http://x:1", MinDownload: units.Mbit})
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(wire.Closed, "start")
	g.stepLocked(vGood, "")
	if a := g.stepLocked(vGood, ""); a != full {
		t.Fatalf("two goods: action %d, want a full test", a)
	}
	g.backOffLocked(100 << 20)
	first := g.fullBackoff
	if first < 30*time.Second {
		t.Fatalf("back-off %s, want at least 30 s", first)
	}
	g.stepLocked(vGood, "")
	if a := g.stepLocked(vGood, ""); a == full || g.st.State != wire.Closed {
		t.Fatalf("during the back-off: action %d state %s, want no full test and still closed", a, g.st.State)
	}
	g.backOffLocked(0)
	if g.fullBackoff != 2*first && g.fullBackoff != time.Hour {
		t.Fatalf("second back-off %s, want double %s", g.fullBackoff, first)
	}
	g.fullNotBefore = time.Now().Add(-time.Second)
	g.stepLocked(vGood, "")
	if a := g.stepLocked(vGood, ""); a != full {
		t.Fatalf("after the back-off: action %d, want a full test", a)
	}
	// Held again at a probe reading of 6 Mbit/s; probes at 8 keep the
	// hold, probes at 100 (the link restored) lift it.
	g.probeDown = 6e6
	g.backOffLocked(0)
	g.probeDown = 8e6
	g.stepLocked(vGood, "")
	if a := g.stepLocked(vGood, ""); a == full {
		t.Fatal("a probe a little faster lifted the hold")
	}
	g.probeDown = 100e6
	g.stepLocked(vGood, "")
	if a := g.stepLocked(vGood, ""); a != full || !g.fullNotBefore.IsZero() {
		t.Fatalf("probes 16x faster than when held: action %d, hold until %s; want a full test now", a, g.fullNotBefore)
	}
}
