package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
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
// content server and the sink, real edgeguard workloads on the fleet's
// cloud member.
type Cloud struct {
	SpeedURL, ContentURL, SinkURL          string
	SpeedEvents, ContentEvents, SinkEvents string
	// SpeedPort, ContentPort and SinkPort are where they listen (the
	// package's constants, or the fleet's clusters.CloudPorts).
	SpeedPort, ContentPort, SinkPort int
	host                             clusters.Host
	speed, content, sink             clusters.Process
	tokens                           map[string]string // node -> its sink token
	reader                           string            // reads every stream's summary
}

// SinkToken is node's bearer token for the sink: the embedded fleet gives
// every node its own, allowed only that node's records.
func (c *Cloud) SinkToken(node string) string { return c.tokens[node] }

// CloudOption configures StartCloud.
type CloudOption func(*cloudOptions)

type cloudOptions struct{ sink scenarios.SinkSpec }

// WithSinkAdmission bounds what the sink admits (a scenario's
// runtime.sink); without it the sink takes whatever comes.
func WithSinkAdmission(s scenarios.SinkSpec) CloudOption {
	return func(o *cloudOptions) { o.sink = s }
}

// sinkFlags are edgeguard sink's flags for s.
func sinkFlags(s scenarios.SinkSpec) []string {
	var out []string
	if s.IngestRate != "" {
		out = append(out, "--ingest-rate="+s.IngestRate)
	}
	if s.Concurrency > 0 {
		out = append(out, "--ingest-concurrency="+strconv.Itoa(s.Concurrency))
	}
	if s.MaxWait > 0 {
		out = append(out, "--ingest-max-wait="+s.MaxWait.D().String())
	}
	return out
}

// StartCloud starts the speed-test server, the content server and the
// sink on f's cloud and waits until they answer.
func StartCloud(ctx context.Context, f clusters.Fleet, edgeguard string, opts ...CloudOption) (*Cloud, error) {
	var o cloudOptions
	for _, opt := range opts {
		opt(&o)
	}
	cloud, err := f.Member(clusters.CloudName)
	if err != nil {
		return nil, err
	}
	paths, err := f.Paths(cloud.Name)
	if err != nil {
		return nil, err
	}
	host, err := f.Host(cloud.Name)
	if err != nil {
		return nil, err
	}
	ev := paths.Evidence
	speedPort, contentPort, sinkPort := SpeedPort, ContentPort, SinkPort
	if cp, ok := f.(clusters.CloudPorts); ok {
		speedPort, contentPort, sinkPort = cp.CloudPorts()
	}
	c := &Cloud{
		SpeedPort: speedPort, ContentPort: contentPort, SinkPort: sinkPort,
		SpeedURL:      fmt.Sprintf("http://%s:%d", cloud.Address, speedPort),
		ContentURL:    fmt.Sprintf("http://%s:%d/page", cloud.Address, contentPort),
		SinkURL:       fmt.Sprintf("http://%s:%d", cloud.Address, sinkPort),
		SpeedEvents:   path.Join(ev, "cloud-speedserver.jsonl"),
		ContentEvents: path.Join(ev, "cloud-content.jsonl"),
		SinkEvents:    path.Join(ev, "cloud-sink.jsonl"),
		host:          host,
		tokens:        map[string]string{},
	}
	var creds sink.Credentials
	for _, m := range f.Members() {
		if m.Role != clusters.RoleNode {
			continue
		}
		tok, err := newToken()
		if err != nil {
			return nil, err
		}
		c.tokens[m.Name] = tok
		creds.Sites = append(creds.Sites, sink.Site{Name: m.Site + "/" + m.Name, Token: tok, Members: []string{m.Name}})
	}
	if len(creds.Sites) == 0 {
		// No node forwards; the sink still wants credentials, so it gets
		// one nobody holds.
		tok, err := newToken()
		if err != nil {
			return nil, err
		}
		creds.Sites = []sink.Site{{Name: "none", Token: tok, Members: []string{clusters.CloudName}}}
	}
	if c.reader, err = newToken(); err != nil {
		return nil, err
	}
	creds.Readers = []string{c.reader}
	credJSON, err := json.Marshal(creds)
	if err != nil {
		return nil, err
	}
	start := func(name string, args ...string) (clusters.Process, error) {
		cmd := clusters.Command{Name: name, Argv: append([]string{edgeguard, name, "--node=cloud"}, args...)}
		if name == "sink" {
			cmd.Env = []string{"EDGEGUARD_SINK_CREDENTIALS=" + string(credJSON)}
		}
		return f.StartCommand(ctx, cloud.Name, cmd)
	}
	if c.speed, err = start("speedserver", fmt.Sprintf("--listen=:%d", speedPort), "--events="+c.SpeedEvents); err != nil {
		return nil, err
	}
	if c.content, err = start("content", fmt.Sprintf("--listen=:%d", contentPort), "--events="+c.ContentEvents); err != nil {
		c.Stop()
		return nil, err
	}
	if c.sink, err = start("sink", append([]string{fmt.Sprintf("--listen=:%d", sinkPort), "--db=" + path.Join(paths.Data, "sink.db"), "--events=" + c.SinkEvents}, sinkFlags(o.sink)...)...); err != nil {
		c.Stop()
		return nil, err
	}
	for _, u := range []string{c.SpeedURL + "/speedtest/latency.txt", c.ContentURL + "?size=1", c.SinkURL + "/healthz"} {
		if err := waitHTTP(ctx, host, u, 10*time.Second); err != nil {
			c.Stop()
			return nil, fmt.Errorf("cloud service did not come up (its log: %s): %w", c.speed.LogPath(), err)
		}
	}
	return c, nil
}

// Stop stops the cloud's services.
func (c *Cloud) Stop() {
	for _, p := range []clusters.Process{c.speed, c.content, c.sink} {
		if p != nil {
			_ = p.Stop(2 * time.Second)
		}
	}
}

// Streams reads the sink's per-stream summary over the management path.
func (c *Cloud) Streams(ctx context.Context) ([]record.StreamSummary, error) {
	var out []record.StreamSummary
	return out, c.get(ctx, "/v1/streams", &out)
}

// Hashes reads the content hash the sink holds under every key of the
// given streams (record key -> record.Hash), page by page.
func (c *Cloud) Hashes(ctx context.Context, streams []record.StreamSummary) (map[string]string, error) {
	out := map[string]string{}
	for _, st := range streams {
		var after uint64
		for {
			q := url.Values{"node": {st.Node}, "epoch": {st.Epoch}, "stream": {st.Stream}, "after": {strconv.FormatUint(after, 10)}}
			var page record.Hashes
			if err := c.get(ctx, "/v1/hashes?"+q.Encode(), &page); err != nil {
				return nil, err
			}
			for _, h := range page.Hashes {
				out[record.Key(st.Node, st.Epoch, st.Stream, h.Seq)] = h.Hash
				after = h.Seq
			}
			if !page.More || len(page.Hashes) == 0 {
				break
			}
		}
	}
	return out, nil
}

// get reads one of the sink's JSON answers with the harness's reader token.
func (c *Cloud) get(ctx context.Context, path string, v any) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: c.host.DialContext}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.SinkURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.reader)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the sink's %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// Gate is an edgeguard serve running on a member, watched over the
// management path (the member's own loopback, never its shaped link).
type Gate struct {
	Node, Events string
	// Proc is the process StartGate started (nil from GateOn).
	Proc   clusters.Process
	client *http.Client
}

// StartGate runs edgeguard serve on node against the cloud's speed server
// with the given extra flags (thresholds and so on), and waits for its API.
func StartGate(ctx context.Context, f clusters.Fleet, edgeguard, node string, c *Cloud, flags ...string) (*Gate, error) {
	g, err := GateOn(f, node)
	if err != nil {
		return nil, err
	}
	paths, err := f.Paths(node)
	if err != nil {
		return nil, err
	}
	g.Events = path.Join(paths.Evidence, node+"-gate.jsonl")
	argv := append([]string{edgeguard, "serve", "--node=" + node, fmt.Sprintf("--listen=:%d", GatePort), "--server=" + c.SpeedURL, "--events=" + g.Events}, flags...)
	if g.Proc, err = f.StartCommand(ctx, node, clusters.Command{Name: "gate", Argv: argv, Env: []string{"EDGEGUARD_SINK_TOKEN=" + c.SinkToken(node)}}); err != nil {
		return nil, err
	}
	host, _ := f.Host(node)
	if err := waitHTTP(ctx, host, g.URL()+"/healthz", 10*time.Second); err != nil {
		_ = g.Proc.Stop(time.Second)
		var b []byte
		if p := g.Proc.LogPath(); p != "" {
			b, _ = os.ReadFile(p)
		}
		return nil, fmt.Errorf("edgeguard serve on %s did not come up: %w\n%s", node, err, b)
	}
	return g, nil
}

// GateOn is the API of the edgeguard serve running on member (started by
// StartGate or by a scenario's run), reached over the member's own
// loopback: the management path, never its shaped link.
func GateOn(f clusters.Fleet, member string) (*Gate, error) {
	host, err := f.Host(member)
	if err != nil {
		return nil, err
	}
	return &Gate{Node: member, client: &http.Client{Transport: &http.Transport{DialContext: host.DialContext}, Timeout: 5 * time.Second}}, nil
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
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
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

// Stop stops the edgeguard serve StartGate started.
func (g *Gate) Stop() {
	if g.Proc != nil {
		_ = g.Proc.Stop(2 * time.Second)
	}
}

// waitHTTP polls url from inside host until it answers 2xx.
func waitHTTP(ctx context.Context, host clusters.Host, url string, within time.Duration) error {
	c := &http.Client{Transport: &http.Transport{DialContext: host.DialContext}, Timeout: time.Second}
	defer c.CloseIdleConnections()
	err := waitUntil(ctx, within, func(ctx context.Context) error { return httpOK(ctx, c, url) })
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}

// waitUntil runs check every 100 ms until it passes, or returns its last
// error when within has passed.
func waitUntil(ctx context.Context, within time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		last := check(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// newToken is a fresh bearer token.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("a sink token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
