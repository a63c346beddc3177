package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/showwin/speedtest-go/speedtest"
)

// fullResult is one speedtest-go run: what the talk's init container did,
// done once at start and when the cheap probes say the link changed.
type fullResult struct {
	latency  time.Duration
	download float64 // bits/s
	upload   float64 // bits/s, 0 when not run
}

// fullTest runs speedtest-go's ping and download (and upload when asked)
// against base with the gate's own client. capture bounds each direction.
// A latency already measured (the probes', > 0) skips speedtest-go's ping,
// which takes ten round trips 200 ms apart: a confirmation is 2 s sooner.
func fullTest(ctx context.Context, c *http.Client, m *meter, base string, capture time.Duration, withUpload bool, latency time.Duration) (fullResult, error) {
	st := speedtest.New(speedtest.WithDoer(c))
	st.SetCaptureTime(capture)
	srv, err := st.CustomServer(base)
	if err != nil {
		return fullResult{}, fmt.Errorf("speed-test server %q: %w", base, err)
	}
	if latency <= 0 {
		if err := srv.PingTestContext(ctx, nil); err != nil {
			return fullResult{}, fmt.Errorf("speedtest ping: %w", err)
		}
		latency = srv.MinLatency
	}
	// speedtest-go's rate is an average over a 5 s window, ramp-up
	// included: a short capture reads the link slower than it is. The
	// gate's own byte count over the best half of the capture does not.
	done := make(chan struct{})
	tail := make(chan float64, 1)
	go func() { tail <- bestWindow(m, capture/2, done) }()
	err = srv.DownloadTestContext(ctx)
	close(done)
	best := <-tail
	if err != nil {
		return fullResult{}, fmt.Errorf("speedtest download: %w", err)
	}
	if ctx.Err() != nil {
		return fullResult{}, ctx.Err()
	}
	r := fullResult{latency: latency, download: max(float64(srv.DLSpeed)*8, best)}
	if srv.DLSpeed <= 0 {
		return r, errors.New("speedtest download measured nothing (requests failed)")
	}
	if withUpload {
		st.Reset()
		if err := srv.UploadTestContext(ctx); err != nil {
			return r, fmt.Errorf("speedtest upload: %w", err)
		}
		// speedtest-go's upload is unreliable at low rates (no 1 MB POST
		// completes); a zero is "not measured", which the caller treats
		// as a failed upload check, never as a pass.
		r.upload = max(float64(srv.ULSpeed)*8, 0)
	}
	return r, nil
}

// bestWindow samples the meter every 50 ms until done and returns the
// highest rate (bits/s) over any span of w: the link's rate once the
// transfer's ramp is over.
func bestWindow(m *meter, w time.Duration, done <-chan struct{}) float64 {
	type sample struct {
		at time.Time
		n  int64
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var ss []sample
	best := 0.0
	for {
		now := sample{time.Now(), m.n.Load()}
		ss = append(ss, now)
		// The oldest sample at least w before now.
		for len(ss) > 1 && now.at.Sub(ss[1].at) >= w {
			ss = ss[1:]
		}
		if d := now.at.Sub(ss[0].at); d >= w && w > 0 {
			best = max(best, float64(now.n-ss[0].n)*8/d.Seconds())
		}
		select {
		case <-done:
			return best
		case <-t.C:
		}
	}
}

// candidate is a server from Ookla's public list.
type candidate struct {
	URL      string
	Name     string
	Distance float64 // km
}

// pickServer chooses among Ookla's public servers: the nearest few (by the
// list's distance) are pinged and the one with the lowest latency wins;
// servers that fail to answer are skipped. It is the selection behind
// --server auto, kept apart from the network so it can be unit-tested.
func pickServer(ctx context.Context, list []candidate, nearest int, rtt func(context.Context, string) (time.Duration, error)) (string, time.Duration, error) {
	if len(list) == 0 {
		return "", 0, errors.New("the public server list is empty")
	}
	l := append([]candidate(nil), list...)
	sort.SliceStable(l, func(i, j int) bool { return l[i].Distance < l[j].Distance })
	if nearest > 0 && len(l) > nearest {
		l = l[:nearest]
	}
	best, bestRTT := "", time.Duration(0)
	var errs []error
	for _, c := range l {
		d, err := rtt(ctx, c.URL)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			continue
		}
		if best == "" || d < bestRTT {
			best, bestRTT = c.URL, d
		}
	}
	if best == "" {
		return "", 0, fmt.Errorf("none of the %d nearest public servers answered: %w", len(l), errors.Join(errs...))
	}
	return best, bestRTT, nil
}

// autoServer fetches Ookla's public list (this needs the internet, which
// test machines here do not have) and picks one with pickServer.
func autoServer(ctx context.Context, c *http.Client) (string, error) {
	st := speedtest.New(speedtest.WithDoer(c))
	servers, err := st.FetchServerListContext(ctx)
	if err != nil {
		return "", fmt.Errorf("fetching Ookla's public server list (--server auto needs the internet; give --server URL for your own server): %w", err)
	}
	var list []candidate
	for _, s := range servers {
		list = append(list, candidate{URL: baseOf(s.URL), Name: s.Name + " (" + s.Sponsor + ")", Distance: s.Distance})
	}
	u, _, err := pickServer(ctx, list, 5, func(ctx context.Context, base string) (time.Duration, error) {
		return ping(ctx, c, base)
	})
	return u, err
}

// SpeedTestResult is one full speed test.
type SpeedTestResult struct {
	Latency     time.Duration
	DownloadBps float64
	UploadBps   float64
	// Bytes is what the test moved over the link, both directions.
	Bytes int64
}

// SpeedTest runs one full speedtest-go test against the speed-test server
// at base — what the talk's init container did every 5 s — measuring each
// direction for capture. `edgeguard speedtest` and the benchmark's
// baseline use it.
func SpeedTest(ctx context.Context, base string, capture time.Duration, withUpload bool) (SpeedTestResult, error) {
	b, err := ParseServer(base)
	if err != nil {
		return SpeedTestResult{}, err
	}
	var m meter
	c := newClient(&m, nil)
	defer c.CloseIdleConnections()
	r, err := fullTest(ctx, c, &m, b, capture, withUpload, 0)
	return SpeedTestResult{Latency: r.latency, DownloadBps: r.download, UploadBps: r.upload, Bytes: m.n.Load()}, err
}
