package dial_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/nameserver"
	"github.com/edgefault/edgefault/runtime/dial"
	"github.com/edgefault/edgefault/runtime/events"
)

// A real DNS server on loopback fails, then delays, then answers again; a
// dialer with the last good answer reaches the cloud throughout, one
// without fails while the resolver does.
func TestDialOnTheLastGoodAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := nameserver.Serve(pc, map[string]netip.Addr{"cloud.edgefault.test": netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	cloud := net.JoinHostPort("cloud.edgefault.test", port)

	evPath := filepath.Join(t.TempDir(), "dial.jsonl")
	ev, err := events.Open(evPath, "n", "dial", nil)
	if err != nil {
		t.Fatal(err)
	}
	cached := dial.New(dial.WithServer(pc.LocalAddr().String()), dial.WithLookupTimeout(300*time.Millisecond), dial.WithEvents(ev))
	bare := dial.New(dial.WithServer(pc.LocalAddr().String()), dial.WithLookupTimeout(300*time.Millisecond), dial.WithoutStale())
	try := func(d *dial.Dialer, addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, d := range []*dial.Dialer{cached, bare} {
		if err := try(d, cloud); err != nil {
			t.Fatalf("with the resolver answering: %v", err)
		}
	}
	if err := try(cached, net.JoinHostPort("elsewhere.example", port)); err == nil {
		t.Error("a name the server does not know resolved")
	}
	client := netip.MustParseAddr("127.0.0.1")
	for _, r := range []nameserver.Rule{{Fail: true}, {Delay: time.Second}} {
		ns.Set(client, r)
		start := time.Now()
		if err := try(cached, cloud); err != nil {
			t.Errorf("%+v: the dialer with the last good answer failed: %v", r, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%+v: the dial on the last good answer took %v (lookup timeout 300 ms)", r, took)
		}
		start = time.Now()
		err := try(bare, cloud)
		switch {
		case r.Fail && (err == nil || !strings.Contains(err.Error(), "resolve cloud.edgefault.test")):
			t.Errorf("%+v: the dialer without a cache: %v, want a resolve error", r, err)
		case !r.Fail && err != nil:
			t.Errorf("%+v: the dialer without a cache waits for a slow answer, and failed: %v", r, err)
		case !r.Fail && time.Since(start) < r.Delay:
			t.Errorf("%+v: the dialer without a cache dialled after %v, before the answer", r, time.Since(start))
		}
	}
	ns.Set(client, nameserver.Rule{})
	for _, d := range []*dial.Dialer{cached, bare} {
		if err := try(d, cloud); err != nil {
			t.Fatalf("with the resolver back: %v", err)
		}
	}
	if err := try(cached, "127.0.0.1:"+port); err != nil {
		t.Errorf("an IP address: %v", err)
	}
	ev.Close()
	b, _ := os.ReadFile(evPath)
	if strings.Count(string(b), `"dns-stale"`) != 1 || strings.Count(string(b), `"dns-fresh"`) != 1 {
		t.Errorf("want one dns-stale and one dns-fresh event, got:\n%s", b)
	}
	if c := ns.Counts(); c.Failed < 2 || c.Delayed < 2 || c.Refused < 1 {
		t.Errorf("the server's counts %+v: it did not fail, delay and refuse as set", c)
	}
}
