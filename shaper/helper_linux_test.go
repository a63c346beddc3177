package shaper_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
)

// goTool finds the go command: on PATH, in GOROOT, or at /usr/local/go.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	for _, p := range []string{filepath.Join(runtime.GOROOT(), "bin", "go"), "/usr/local/go/bin/go"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func TestHelperMustExist(t *testing.T) {
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = shaper.New(shaper.WithLedger(l, "test"), shaper.WithStateDir(filepath.Join(dir, "state")),
		shaper.WithHelper(filepath.Join(dir, "missing")), shaper.WithCapabilities(shaper.Capabilities{}))
	if err == nil {
		t.Fatal("New with a missing helper succeeded")
	}
}

// With WithHelper the delayer (and the ledger's gate before it) runs as the
// edgeguard binary, not as this test binary: what a user's own test suite,
// which never calls RunHelperIfInvoked, relies on.
func TestDelayerRunsAsHelper(t *testing.T) {
	gocmd := goTool()
	if gocmd == "" {
		t.Skip("no go command found (not on PATH, in GOROOT or /usr/local/go/bin): cannot build edgeguard")
	}
	dir := t.TempDir()
	edgeguard := filepath.Join(dir, "edgeguard")
	if out, err := exec.Command(gocmd, "build", "-o", edgeguard, "github.com/edgefault/edgefault/cmd/edgeguard").CombinedOutput(); err != nil {
		t.Fatalf("build edgeguard: %v\n%s", err, out)
	}
	star := traffic.StarT(t, 2)
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shaper.New(shaper.WithLedger(l, "test"), shaper.WithStateDir(filepath.Join(dir, "state")),
		shaper.WithBackend(shaper.BackendFallback), shaper.WithHelper(edgeguard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.Close()
		if err := l.Sweep("test", shaper.Removers()); err != nil {
			t.Errorf("sweep: %v", err)
		}
	})
	if l.Helper() != ledger.DefaultHelper {
		t.Errorf("the caller's ledger changed: helper %q", l.Helper())
	}
	ctx := context.Background()
	addr, stop, err := traffic.Echo(star.Hosts[1], star.Addr(1)+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tg := target(star, 0)
	if err := sh.Apply(ctx, tg, shaper.Impairment{Delay: 20 * time.Millisecond, Direction: shaper.Egress}); err != nil {
		t.Fatal(err)
	}
	// The delayer is in the caller's ledger and runs edgeguard.
	entries, err := l.Entries("test")
	if err != nil {
		t.Fatal(err)
	}
	var helpers []ledger.Entry
	for _, e := range entries {
		if e.Kind != ledger.KindProcess {
			continue
		}
		helpers = append(helpers, e)
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", e.PID))
		if err != nil || exe != edgeguard {
			t.Errorf("delayer %d (%s) runs %q (%v), want %q", e.PID, e.Name, exe, err, edgeguard)
		}
	}
	if len(helpers) != 1 {
		t.Fatalf("%d helper processes in the ledger, want 1: %+v", len(helpers), entries)
	}
	rtts, err := traffic.RTTs(ctx, star.Hosts[0], addr.String(), 10, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) < 9 {
		t.Fatalf("only %d of 10 echoes answered", len(rtts))
	}
	if med := rtts[len(rtts)/2]; med < 20*time.Millisecond || med > 30*time.Millisecond {
		t.Errorf("median RTT %v with 20ms egress delay, want 20-30ms", med)
	}
	if err := sh.Clear(ctx, tg); err != nil {
		t.Fatal(err)
	}
	// Retired, the delayer drains and exits by itself (it stays recorded
	// until the next Apply or the sweep notices).
	for deadline := time.Now().Add(3 * time.Second); helpers[0].Alive() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if helpers[0].Alive() {
		t.Errorf("delayer %d still runs 3s after Clear", helpers[0].PID)
	}
}
