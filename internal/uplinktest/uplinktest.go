// Package uplinktest is the shared-uplink experiment the end-to-end suite
// and the benchmark both run: nodes behind one gateway of an embedded
// fleet, each with a real edgeguard serve (gate and buffer) and a backlog
// built while the gateway's uplink is out; the uplink returns, and the
// experiment measures what their gates and flushes do: when each gate
// opens, whether any closes again, the site's flush as the gateway's WAN
// interface counts it, and how long the backlogs take to drain.
package uplinktest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/shaper"
)

// Options describe one run.
type Options struct {
	Fleet     *netns.Fleet
	Cloud     *harness.Cloud
	Shaper    *shaper.Shaper
	Edgeguard string
	// Gateway is the site's gateway; Nodes are the nodes behind it.
	Gateway string
	Nodes   []string
	// Uplink is the gateway's uplink when it is up (its rate is what the
	// flush is judged against).
	Uplink shaper.Impairment
	// Outage is how long the uplink is out; Backlog is what each node
	// queues meanwhile (bytes of payload).
	Outage  time.Duration
	Backlog int
	// Coordinated runs the runtimes as one site (--site, --site-peer);
	// otherwise each paces alone and confirms reopenings with a
	// full-length test: the behaviour before sites agreed.
	Coordinated bool
	// FullDuration is the gates' first full test (default 10s, the
	// runtime's own); without Coordinated, their confirmations too.
	FullDuration time.Duration
	// Flags are more serve flags (thresholds).
	Flags []string
	// Tag names this run's buffers and evidence.
	Tag string
}

// Result is what one run measured.
type Result struct {
	// Backlog is the bytes queued across the nodes at the restore.
	Backlog int64
	// Capacity is the gates' measured capacity (their mean), bits/s.
	Capacity float64
	// OpenAfter is each node's gate opening, after the restore.
	OpenAfter []time.Duration
	// Flaps counts gate closings after a gate first opened, until every
	// backlog drained.
	Flaps int
	// Drain runs from the first gate's opening to the last record's
	// acknowledgement.
	Drain time.Duration
	// MeanBps is the gateway's upstream rate over Drain; P95Bps the 95th
	// percentile of its 1 s windows; both as the WAN interface counts them.
	MeanBps, P95Bps float64
	// Throttled counts the sink's 429s across the nodes.
	Throttled int64
}

// Run runs the experiment once. It leaves the uplink as Options.Uplink
// and stops the runtimes it started.
func Run(ctx context.Context, o Options) (Result, error) {
	var res Result
	gwTarget, err := o.Fleet.Target(o.Gateway)
	if err != nil {
		return res, err
	}
	gw, err := o.Fleet.NetnsMember(o.Gateway)
	if err != nil {
		return res, err
	}
	addrs := map[string]string{}
	for _, n := range o.Nodes {
		m, err := o.Fleet.Member(n)
		if err != nil {
			return res, err
		}
		addrs[n] = m.Address
	}
	if o.FullDuration == 0 {
		o.FullDuration = 10 * time.Second
	}
	gates := map[string]*harness.Gate{}
	defer func() {
		for _, g := range gates {
			g.Stop()
		}
	}()
	for _, n := range o.Nodes {
		flags := append([]string{"--buffer=" + o.Fleet.Dir() + "/" + n + "-" + o.Tag + ".db", "--sink=" + o.Cloud.SinkURL, "--full-duration=" + o.FullDuration.String()}, o.Flags...)
		if o.Coordinated {
			flags = append(flags, "--site="+o.Gateway)
			for _, p := range o.Nodes {
				if p != n {
					flags = append(flags, "--site-peer="+addrs[p])
				}
			}
		} else {
			// The confirmation before sites: as long as the first test.
			flags = append(flags, "--confirm-duration="+o.FullDuration.String())
		}
		g, err := harness.StartGate(ctx, o.Fleet, o.Edgeguard, n, o.Cloud, flags...)
		if err != nil {
			return res, err
		}
		gates[n] = g
	}
	for _, n := range o.Nodes {
		if _, err := gates[n].WaitState(ctx, wire.Open, 90*time.Second); err != nil {
			return res, fmt.Errorf("%s's gate before the outage: %w", n, err)
		}
	}
	if err := o.Shaper.Apply(ctx, gwTarget, shaper.Impairment{Outage: true}); err != nil {
		return res, err
	}
	cut := time.Now()
	for _, n := range o.Nodes {
		// Closed or unknown (a cut link answers nothing): not open.
		for st, err := gates[n].Status(ctx); err != nil || st.Open; st, err = gates[n].Status(ctx) {
			if time.Since(cut) > time.Minute {
				return res, fmt.Errorf("%s's gate still open a minute into the outage (%v)", n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := backlog(ctx, o.Fleet, gates[n], n, o.Backlog); err != nil {
			return res, err
		}
	}
	for _, n := range o.Nodes {
		var s buffer.Stats
		if err := gates[n].Get(ctx, "/v1/buffer", &s); err != nil {
			return res, err
		}
		res.Backlog += s.Bytes
	}
	if left := o.Outage - time.Since(cut); left > 0 {
		time.Sleep(left)
	}
	if err := o.Shaper.Apply(ctx, gwTarget, o.Uplink); err != nil {
		return res, err
	}
	restored := time.Now()

	// Sample the gateway's WAN counter and the buffers until every
	// backlog is gone.
	type sample struct {
		at time.Time
		tx int64
	}
	var samples []sample
	opened := map[string]time.Time{}
	drained := time.Time{}
	deadline := restored.Add(5 * time.Minute)
	for drained.IsZero() {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("backlogs not drained 5 min after the restore")
		}
		tx, err := wanTx(gw.Namespace)
		if err != nil {
			return res, err
		}
		samples = append(samples, sample{time.Now(), tx})
		left := int64(0)
		for _, n := range o.Nodes {
			var st wire.GateStatus
			if err := gates[n].Get(ctx, "/v1/gate", &st); err == nil && st.Open {
				if _, ok := opened[n]; !ok {
					opened[n] = time.Now()
				}
			}
			var s buffer.Stats
			if err := gates[n].Get(ctx, "/v1/buffer", &s); err != nil {
				return res, err
			}
			left += s.Records
		}
		if left == 0 && len(opened) == len(o.Nodes) {
			drained = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each gate's own events: when it opened (the sampling above is only
	// a bound) and whether it closed again.
	logs := map[string][]wire.Event{}
	first := drained
	for _, n := range o.Nodes {
		evs, err := events.Read(gates[n].Events)
		if err != nil {
			return res, err
		}
		logs[n] = evs
		at := opened[n]
		for _, e := range evs {
			if e.Event == "open" && e.Time.After(restored) {
				at = e.Time
				break
			}
		}
		res.OpenAfter = append(res.OpenAfter, at.Sub(restored))
		if at.Before(first) {
			first = at
		}
	}
	res.Drain = drained.Sub(first)
	for _, n := range o.Nodes {
		seenOpen := false
		for _, e := range logs[n] {
			if e.Time.Before(restored) || e.Time.After(drained) {
				continue
			}
			switch e.Event {
			case "open":
				seenOpen = true
			case "closed":
				if seenOpen {
					res.Flaps++
				}
			}
		}
		var st wire.GateStatus
		if err := gates[n].Get(ctx, "/v1/gate", &st); err == nil {
			res.Capacity += st.CapacityBps / float64(len(o.Nodes))
		}
		var s buffer.Stats
		if err := gates[n].Get(ctx, "/v1/buffer", &s); err == nil {
			res.Throttled += s.Throttled
		}
	}
	// The site's upstream while it drained: the mean, and the 1 s windows.
	var inDrain []sample
	for _, s := range samples {
		if !s.at.Before(first) && !s.at.After(drained) {
			inDrain = append(inDrain, s)
		}
	}
	if n := len(inDrain); n >= 2 {
		res.MeanBps = float64(inDrain[n-1].tx-inDrain[0].tx) * 8 / inDrain[n-1].at.Sub(inDrain[0].at).Seconds()
		var windows []float64
		for i := range inDrain {
			for j := i + 1; j < n; j++ {
				if d := inDrain[j].at.Sub(inDrain[i].at); d >= time.Second {
					windows = append(windows, float64(inDrain[j].tx-inDrain[i].tx)*8/d.Seconds())
					break
				}
			}
		}
		if len(windows) > 0 {
			slices.Sort(windows)
			res.P95Bps = windows[len(windows)*95/100]
		}
	}
	return res, nil
}

// backlog queues about n bytes of payload on node, in 64 KiB records.
func backlog(ctx context.Context, f *netns.Fleet, g *harness.Gate, node string, n int) error {
	m, err := f.NetnsMember(node)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(m.Namespace)}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	payload := bytes.Repeat([]byte("b"), 64<<10)
	for sent := 0; sent < n; {
		var batch []buffer.Input
		for k := 0; k < 8 && sent < n; k++ {
			batch = append(batch, buffer.Input{Stream: "backlog", Payload: payload})
			sent += len(payload)
		}
		body, _ := json.Marshal(batch)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL()+"/v1/records", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("building %s's backlog: %w", node, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("building %s's backlog: %s", node, resp.Status)
		}
	}
	return nil
}

// wanTx is what the gateway has sent upstream on its WAN interface.
func wanTx(ns string) (int64, error) {
	var b []byte
	if err := nsdo.Do(ns, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != "wan0" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 9 {
			break
		}
		return strconv.ParseInt(fs[8], 10, 64)
	}
	return 0, fmt.Errorf("no wan0 in %s", ns)
}
