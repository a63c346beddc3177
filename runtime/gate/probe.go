package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// meter counts every byte that crosses the gate's own connections, so the
// bytes spent probing are measured, not estimated.
type meter struct{ n atomic.Int64 }

type meteredConn struct {
	net.Conn
	m *meter
}

func (c meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.n.Add(int64(n))
	return n, err
}

func (c meteredConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.n.Add(int64(n))
	return n, err
}

// newClient returns an HTTP client of the gate's own: speedtest-go replaces
// http.DefaultClient's transport, so nothing here may use the default one.
// dial dials the server (nil: a plain dialer).
func newClient(m *meter, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	if dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
		dial = d.DialContext
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return meteredConn{Conn: c, m: m}, nil
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// probeResult is what one bounded-byte probe saw.
type probeResult struct {
	latency  time.Duration
	download float64 // bits/s
	upload   float64 // bits/s; 0 when not probed
	got      int64   // payload bytes downloaded
}

// errGarbage marks answers that are not a speed-test server's.
var errGarbage = errors.New("not a speed-test server's answer")

// ping fetches latency.txt once and checks the answer is a speed-test
// server's ("test=test"), so a captive portal or a wrong URL that answers
// 200 with HTML is an error, not a fast link.
func ping(ctx context.Context, c *http.Client, base string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/speedtest/latency.txt", nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	resp.Body.Close()
	rtt := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("latency.txt: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("latency.txt answered %s: %w", resp.Status, errGarbage)
	}
	if !strings.HasPrefix(string(body), "test=test") {
		return 0, fmt.Errorf("latency.txt answered %q, want \"test=test\": %w", truncate(body), errGarbage)
	}
	return rtt, nil
}

func truncate(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…"
	}
	return string(b)
}

// download asks for exactly size bytes (Range) of the largest random image
// and estimates the rate from the second half of the bytes. A short
// transfer spends its first round trips in TCP slow start, which says
// nothing about the link; by the second half the sender's window is at its
// largest and each flight arrives spaced by the bottleneck, so the rate of
// the second half is the link's (within the shaper's burst allowance). A
// server that ignores Range is still read only up to size bytes. At
// deadline it stops and estimates from what arrived.
func download(ctx context.Context, c *http.Client, base string, size int64, deadline time.Duration) (bitsPerSec float64, got int64, cut bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/speedtest/random4000x4000.jpg", nil)
	if err != nil {
		return 0, 0, false, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", size-1))
	req.Header.Set("Cache-Control", "no-store")
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return 0, 0, false, fmt.Errorf("download answered %s: %w", resp.Status, errGarbage)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/") {
		return 0, 0, false, fmt.Errorf("download answered %s content: %w", ct, errGarbage)
	}
	buf := make([]byte, 16<<10)
	var arr arrivals
	for got < size {
		n, rerr := resp.Body.Read(buf[:min(int64(len(buf)), size-got)])
		if n > 0 {
			got += int64(n)
			arr.add(got, time.Now(), n == len(buf))
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				break
			}
			if ctx.Err() != nil && got > 0 {
				// Too slow to finish in time: that is a measurement.
				return arr.tailRate(), got, true, nil
			}
			return 0, got, false, fmt.Errorf("download after %d bytes: %w", got, rerr)
		}
	}
	if got < size {
		return 0, got, false, fmt.Errorf("download ended after %d of %d bytes: %w", got, size, errGarbage)
	}
	return arr.tailRate(), got, false, nil
}

// arrivals records when the cumulative byte count grew, and whether the
// read filled its buffer (data was waiting: the reader was behind).
type arrivals struct {
	bytes []int64
	at    []time.Time
	full  []bool
}

func (a *arrivals) add(total int64, t time.Time, full bool) {
	a.bytes = append(a.bytes, total)
	a.at = append(a.at, t)
	a.full = append(a.full, full)
}

// tailRate is the rate (bits/s) over the second half of the bytes. It is
// timed from the last read before the half at which the reader had caught
// up (a read that did not fill its buffer): a reader that fell behind on a
// busy machine finds the socket buffer full and catches up in a burst of
// full reads, and timing the tail from inside that burst would credit the
// link with bytes that arrived earlier. Starting earlier can only make the
// reading lower: a link is never judged faster than it is.
func (a *arrivals) tailRate() float64 {
	n := len(a.bytes)
	if n == 0 {
		return 0
	}
	total := a.bytes[n-1]
	i := 0
	for i < n-1 && a.bytes[i] < total/2 {
		i++
	}
	for i > 0 && (a.full[i] || i == n-1) {
		i--
	}
	if i == n-1 {
		return float64(total) * 8 / time.Microsecond.Seconds() // one read: faster than reads can be timed
	}
	el := a.at[n-1].Sub(a.at[i])
	if el <= 0 {
		el = time.Microsecond
	}
	return float64(total-a.bytes[i]) * 8 / el.Seconds()
}

// upload posts size bytes to upload.php and estimates the rate from the
// time to the answer less one round trip.
func upload(ctx context.Context, c *http.Client, base string, size int64, rtt, deadline time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	body := bytes.NewReader(make([]byte, size))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/speedtest/upload.php", body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	resp.Body.Close()
	el := time.Since(start) - rtt
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(ans), "size=") {
		return 0, fmt.Errorf("upload answered %s %q: %w", resp.Status, truncate(ans), errGarbage)
	}
	if el < time.Millisecond {
		el = time.Millisecond
	}
	return float64(size) * 8 / el.Seconds(), nil
}
