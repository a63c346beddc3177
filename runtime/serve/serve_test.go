package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/serve"
	"github.com/edgefault/edgefault/runtime/speedserver"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/units"
)

// A real gate measuring a real speed-test server on loopback, served over
// HTTP: readiness follows it, the status, long poll, event stream, observe
// and metrics endpoints say what it does.
func TestServeFollowsTheGate(t *testing.T) {
	speed := httptest.NewServer(speedserver.New(nil))
	defer speed.Close()
	g, err := gate.New(gate.Config{Server: speed.URL, MinDownload: 10 * units.Mbit, Interval: 100 * time.Millisecond, NoFullTest: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(serve.Handler(g))
	defer srv.Close()
	c := srv.Client()
	get := func(path string) (int, string) {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "unknown") {
		t.Fatalf("readyz before measuring: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}

	// Subscribe to the event stream before the gate runs.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/gate/events", nil)
	stream, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	// And a long poll for the first change.
	polled := make(chan wire.GateStatus, 1)
	go func() {
		resp, err := c.Get(srv.URL + "/v1/gate?after=0&wait=15s")
		if err != nil {
			close(polled)
			return
		}
		defer resp.Body.Close()
		var s wire.GateStatus
		_ = json.NewDecoder(resp.Body).Decode(&s)
		polled <- s
	}()
	time.Sleep(100 * time.Millisecond)
	go func() { _ = g.Run(ctx) }()

	sc := bufio.NewScanner(stream.Body)
	var states []wire.GateState
	for len(states) < 2 && sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			var s wire.GateStatus
			if err := json.Unmarshal([]byte(line[6:]), &s); err != nil {
				t.Fatal(err)
			}
			states = append(states, s.State)
		}
	}
	if len(states) != 2 || states[0] != wire.Unknown || states[1] != wire.Open {
		t.Fatalf("event stream states %v, want [unknown open]", states)
	}
	if s := <-polled; s.State != wire.Open || s.Seq != 1 {
		t.Fatalf("long poll answered %+v", s)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when open: %d", code)
	}
	code, body := get("/v1/gate")
	var st wire.GateStatus
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || !st.Open || st.ProbeBytes == 0 || len(st.Measurements) == 0 {
		t.Fatalf("/v1/gate: %d %v %s", code, err, body)
	}

	resp, err := c.Post(srv.URL+"/v1/gate/observe", "application/json", strings.NewReader(`{"bytes":1000000,"seconds":0.01}`))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("observe: %v %v", resp, err)
	}
	for _, bad := range []string{`{"bytes":10}`, `nonsense`, `{"bytes":-1,"seconds":1}`,
		`{"bytes":10,"seconds":1e-300}`, `{"bytes":10,"seconds":1e300}`, `{"bytes":2000000000000,"seconds":1}`} {
		resp, _ := c.Post(srv.URL+"/v1/gate/observe", "application/json", strings.NewReader(bad))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("observe %s: %s", bad, resp.Status)
		}
	}
	if code, _ := get("/v1/gate?after=x"); code != http.StatusBadRequest {
		t.Errorf("bad after: %d", code)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`edgeguard_gate_state{state="open"} 1`, `edgeguard_gate_open 1`, `edgeguard_gate_changes_total 1`, `edgeguard_gate_download_bits_per_second{kind="passive"} 8e+08`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}
