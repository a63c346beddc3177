package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/wire"
)

// Ports the runtime's servers listen on in the fleet.
const (
	SpeedPort   = 8080
	ContentPort = 8081
	SinkPort    = 8082
	GatePort    = 8474
)

// FindEdgeguard locates the edgeguard binary: $EDGEGUARD, next to the
// running executable, or on PATH.
func FindEdgeguard() (string, error) {
	if p := os.Getenv("EDGEGUARD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$EDGEGUARD=%s: %w", p, err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "edgeguard")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("edgeguard"); err == nil {
		return p, nil
	}
	return "", errors.New("edgeguard binary not found: run 'make build' (it puts bin/edgeguard next to bin/edgefault) or set $EDGEGUARD")
}

// Cloud is the fleet's cloud services: the speed-test server, the
// content server and the sink, real edgeguard processes in the cloud
// namespace.
type Cloud struct {
	SpeedURL, ContentURL, SinkURL          string
	SpeedEvents, ContentEvents, SinkEvents string
	ns                                     string
	speed, content, sink                   *netns.Process
}

// StartCloud starts the speed-test server, the content server and the
// sink in f's cloud and waits until they answer.
func StartCloud(ctx context.Context, f *netns.Fleet, edgeguard string) (*Cloud, error) {
	cloud, err := f.Member("cloud")
	if err != nil {
		return nil, err
	}
	ev := filepath.Join(f.Dir(), "evidence")
	c := &Cloud{
		SpeedURL:      fmt.Sprintf("http://%s:%d", cloud.Address, SpeedPort),
		ContentURL:    fmt.Sprintf("http://%s:%d/page", cloud.Address, ContentPort),
		SinkURL:       fmt.Sprintf("http://%s:%d", cloud.Address, SinkPort),
		SpeedEvents:   filepath.Join(ev, "cloud-speedserver.jsonl"),
		ContentEvents: filepath.Join(ev, "cloud-content.jsonl"),
		SinkEvents:    filepath.Join(ev, "cloud-sink.jsonl"),
		ns:            cloud.Namespace,
	}
	if c.speed, err = f.Start(ctx, "cloud", "speedserver", []string{edgeguard, "speedserver", "--node=cloud", fmt.Sprintf("--listen=:%d", SpeedPort), "--events=" + c.SpeedEvents}); err != nil {
		return nil, err
	}
	if c.content, err = f.Start(ctx, "cloud", "content", []string{edgeguard, "content", "--node=cloud", fmt.Sprintf("--listen=:%d", ContentPort), "--events=" + c.ContentEvents}); err != nil {
		c.Stop()
		return nil, err
	}
	if c.sink, err = f.Start(ctx, "cloud", "sink", []string{edgeguard, "sink", "--node=cloud", fmt.Sprintf("--listen=:%d", SinkPort), "--db=" + filepath.Join(f.Dir(), "cloud", "sink.db"), "--events=" + c.SinkEvents}); err != nil {
		c.Stop()
		return nil, err
	}
	for _, u := range []string{c.SpeedURL + "/speedtest/latency.txt", c.ContentURL + "?size=1", c.SinkURL + "/v1/streams"} {
		if err := waitHTTP(ctx, cloud.Namespace, u, 10*time.Second); err != nil {
			c.Stop()
			return nil, fmt.Errorf("cloud service did not come up (logs in %s): %w", filepath.Dir(c.speed.Log), err)
		}
	}
	return c, nil
}

// Stop stops both servers.
func (c *Cloud) Stop() {
	for _, p := range []*netns.Process{c.speed, c.content, c.sink} {
		if p != nil {
			_ = p.Stop(2 * time.Second)
		}
	}
}

// Streams reads the sink's per-stream summary over the management path.
func (c *Cloud) Streams(ctx context.Context) ([]record.StreamSummary, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(c.ns)}, Timeout: 10 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.SinkURL+"/v1/streams", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []record.StreamSummary
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Gate is an edgeguard serve running on a node, watched over the
// management path (the node's own loopback, never its shaped link).
type Gate struct {
	Node, Namespace, Events string
	Proc                    *netns.Process
	client                  *http.Client
}

// StartGate runs edgeguard serve on node against the cloud's speed server
// with the given extra flags (thresholds and so on), and waits for its API.
func StartGate(ctx context.Context, f *netns.Fleet, edgeguard, node string, c *Cloud, flags ...string) (*Gate, error) {
	m, err := f.Member(node)
	if err != nil {
		return nil, err
	}
	g := GateOn(m)
	g.Events = filepath.Join(f.Dir(), "evidence", node+"-gate.jsonl")
	argv := append([]string{edgeguard, "serve", "--node=" + node, fmt.Sprintf("--listen=:%d", GatePort), "--server=" + c.SpeedURL, "--events=" + g.Events}, flags...)
	if g.Proc, err = f.Start(ctx, node, "gate", argv); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, m.Namespace, g.URL()+"/healthz", 10*time.Second); err != nil {
		_ = g.Proc.Stop(time.Second)
		b, _ := os.ReadFile(g.Proc.Log)
		return nil, fmt.Errorf("edgeguard serve on %s did not come up: %w\n%s", node, err, b)
	}
	return g, nil
}

// GateOn is the API of the edgeguard serve running on member m (started
// by StartGate or by a scenario's run), reached over the node's own
// loopback: the management path, never its shaped link.
func GateOn(m clusters.Member) *Gate {
	return &Gate{Node: m.Name, Namespace: m.Namespace,
		client: &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(m.Namespace)}, Timeout: 5 * time.Second}}
}

// URL is the gate's API as seen from inside the node.
func (g *Gate) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", GatePort) }

// Status reads /v1/gate.
func (g *Gate) Status(ctx context.Context) (wire.GateStatus, error) {
	var s wire.GateStatus
	return s, g.Get(ctx, "/v1/gate", &s)
}

// Get decodes the JSON at path of the node's edgeguard serve into v.
func (g *Gate) Get(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+path, nil)
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// WaitState polls until the gate is in state want, returning when it got there.
func (g *Gate) WaitState(ctx context.Context, want wire.GateState, within time.Duration) (wire.GateStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last wire.GateStatus
	for {
		s, err := g.Status(ctx)
		if err == nil {
			last = s
			if s.State == want {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("gate on %s still %s (%s) after %s, want %s", g.Node, last.State, last.Reason, within, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops edgeguard serve.
func (g *Gate) Stop() { _ = g.Proc.Stop(2 * time.Second) }

// waitHTTP polls url from inside namespace ns until it answers 200.
func waitHTTP(ctx context.Context, ns, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(ns)}, Timeout: time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
