package gate_test

import (
	"context"
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

// A Remote follows a served gate, and is unknown (not open) as soon as the
// server goes away: a workload never runs on a gate it cannot hear.
func TestRemoteFollowsServeAndFailsClosed(t *testing.T) {
	speed := httptest.NewServer(speedserver.New(nil))
	defer speed.Close()
	g, err := gate.New(gate.Config{Server: speed.URL, MinDownload: units.Mbit, Interval: 100 * time.Millisecond, NoFullTest: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { _ = g.Run(ctx) }()
	srv := httptest.NewServer(serve.Handler(g))
	r, err := gate.NewRemote(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if r.IsOpen() {
		t.Fatal("a remote that has heard nothing is open")
	}
	go r.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := r.Wait(wctx); err != nil {
		t.Fatalf("remote never opened: %+v", r.Status())
	}
	changed := r.Changed()
	srv.CloseClientConnections()
	srv.Close()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change when the server went away")
	}
	if s := r.Status(); s.Open || s.State != wire.Unknown || !strings.Contains(s.Reason, "unreachable") {
		t.Fatalf("after the server went away: %+v", s)
	}
	if _, err := gate.NewRemote("127.0.0.1:8474"); err == nil {
		t.Fatal("an address without a scheme was accepted")
	}
}
