package ledger

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain deliberately does not call RunGateIfInvoked: a ledger with a
// helper (TestStartWithHelper) must never start this binary. Should it be
// started as a gate anyway, it refuses rather than run the suite again.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == gateName {
		fmt.Fprintln(os.Stderr, "ledger test binary started as a start gate: a helper was not used")
		os.Exit(126)
	}
	os.Exit(m.Run())
}

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

func TestHelperOption(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil || l.Helper() != DefaultHelper {
		t.Fatalf("Open without a helper: %v, helper %q; want %q", err, l.Helper(), DefaultHelper)
	}
	if _, err := Open(dir, WithHelper(filepath.Join(dir, "missing"))); err == nil {
		t.Error("Open with a missing helper succeeded")
	}
	if _, err := Open(dir, WithHelper(dir)); err == nil {
		t.Error("Open with a directory as the helper succeeded")
	}
	if (&Ledger{}).Helper() != DefaultHelper {
		t.Error("a zero Ledger has no helper")
	}
}

// A ledger opened WithHelper starts processes through that binary's gate,
// never through the running binary (this test binary does not call
// RunGateIfInvoked, like a user's own test suite).
func TestStartWithHelper(t *testing.T) {
	gocmd := goTool()
	if gocmd == "" {
		t.Skip("no go command found (not on PATH, in GOROOT or /usr/local/go/bin): cannot build the helper")
	}
	tmp := t.TempDir()
	helper := filepath.Join(tmp, "gate")
	if out, err := exec.Command(gocmd, "build", "-o", helper, "./testdata/gate").CombinedOutput(); err != nil {
		t.Fatalf("build helper: %v\n%s", err, out)
	}
	l, err := Open(filepath.Join(tmp, "ledger"), WithHelper(helper))
	if err != nil {
		t.Fatal(err)
	}
	if l.Helper() != helper {
		t.Fatalf("Helper() = %q, want %q", l.Helper(), helper)
	}
	mark := filepath.Join(tmp, "mark")
	cmd := exec.Command("/bin/sleep", "5")
	cmd.Env = append(os.Environ(), "GATE_MARK="+mark)
	target, err := filepath.EvalSymlinks(cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Start("t", "sleeper", cmd, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() { _ = StopProcess(e, time.Second) })
	if cmd.Path != helper {
		t.Errorf("the gate ran %q, want the helper %q", cmd.Path, helper)
	}
	got, err := l.Entries("t")
	if err != nil || len(got) != 1 || got[0].Key() != e.Key() {
		t.Fatalf("entries = %+v, %v; want the sleeper %+v", got, err, e)
	}
	// The gate execs the command in place: same PID, sleep's executable.
	var exe string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", e.PID)); exe == target {
			break
		}
	}
	if exe != target {
		t.Fatalf("process %d runs %q, want %q", e.PID, exe, target)
	}
	if b, err := os.ReadFile(mark); err != nil || strings.TrimSpace(string(b)) != gateName {
		t.Errorf("the helper did not run as the gate: mark %q, %v", b, err)
	}
	if !e.Alive() {
		t.Fatal("the recorded process is not alive")
	}
	if err := StopProcess(e, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		t.Fatal("the process did not exit after StopProcess")
	}
	if e.Alive() {
		t.Error("the process is alive after StopProcess")
	}
	if err := l.Forget("t", e); err != nil {
		t.Fatal(err)
	}
}
