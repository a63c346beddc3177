package member

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/ledger"
)

// Only per-namespace net/... keys with plain values get near /proc/sys.
func TestSysctlRefuses(t *testing.T) {
	for _, c := range []struct{ key, value, want string }{
		{"kernel/core_pattern", "|/tmp/x", "only per-namespace"},
		{"net/../kernel/core_pattern", "1", "only per-namespace"},
		{"net/core/rmem_max", "1", "only per-namespace"},
		{"net/ipv4/ip_forward", "1\n0", "one line"},
		{"net/ipv4/tcp_retries2", "", "one line"},
		{"net/ipv4/tcp_retries2", "$(reboot)", "one line"},
	} {
		err := Sysctl("/nonexistent/ns", c.key, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Sysctl(%q, %q) = %v, want an error about %q", c.key, c.value, err, c.want)
		}
	}
}

func TestCollect(t *testing.T) {
	from, dir := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"evidence/a.jsonl": "a\n", "evidence/skip.txt": "x", "logs/n1-runtime.log": "log\n"} {
		p := filepath.Join(from, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Collect(from, dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"evidence/a.jsonl": "a\n", "logs/n1-runtime.log": "log\n"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "evidence/skip.txt")); !os.IsNotExist(err) {
		t.Errorf("a file that is not evidence was collected: %v", err)
	}
}

// A fleet's lock is held once: a second taker is told ErrBusy until the
// first lets go.
func TestLockFleet(t *testing.T) {
	dir := testLedger(t)
	unlock, err := LockFleet(dir, "f1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockFleet(dir, "f1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v, want ErrBusy", err)
	}
	other, err := LockFleet(dir, "f2")
	if err != nil {
		t.Fatalf("another fleet's lock: %v", err)
	}
	other()
	unlock()
	again, err := LockFleet(dir, "f1")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}

// WaitLockFleet waits for the holder to let go, and gives up with ErrBusy
// when its context ends first.
func TestWaitLockFleet(t *testing.T) {
	dir := testLedger(t)
	unlock, err := LockFleet(dir, "f")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := WaitLockFleet(ctx, dir, "f"); !errors.Is(err, ErrBusy) {
		t.Fatalf("while held: %v, want ErrBusy", err)
	}
	time.AfterFunc(200*time.Millisecond, unlock)
	again, err := WaitLockFleet(context.Background(), dir, "f")
	if err != nil {
		t.Fatalf("after the holder let go: %v", err)
	}
	again()
}

func testLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
