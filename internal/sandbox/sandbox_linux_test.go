package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	RunIfInvoked()
	os.Exit(m.Run())
}

// run starts script under sh, confined by s, and returns its output.
func run(t *testing.T, s Spec, script string) (string, error) {
	t.Helper()
	path, args, env, err := Wrap("/proc/self/exe", s, []string{"sh", "-c", script}, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "APP=1"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: path, Args: args, Env: env}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A confined command is a user with no capabilities, sees none of the
// hidden state, may write only what it was given, and its environment is
// what it was given.
func TestConfined(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("confining a command needs root (mount namespaces, changing user); CI runs as root")
	}
	top := t.TempDir() // 0700: the sandbox covers it whole
	state := filepath.Join(top, "state")
	data := filepath.Join(state, "fleets", "f", "nodes", "n1", "app-a")
	events := filepath.Join(state, "fleets", "f", "evidence", "n1.a.app.jsonl")
	ledger := filepath.Join(state, "ledger")
	for _, d := range []string{data, filepath.Dir(events), ledger} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{events, filepath.Join(ledger, "f.json"), filepath.Join(filepath.Dir(events), "n1-runtime.jsonl")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const uid = 70123
	if err := os.Chown(data, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(events, uid, uid); err != nil {
		t.Fatal(err)
	}
	s := Spec{UID: uid, GID: uid, Hide: []string{state}, Writable: []string{data, events}, Dir: data}
	script := `
set -u
echo "id=$(id -u):$(id -g) pwd=$(pwd)"
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status
grep NoNewPrivs /proc/self/status
env | sort | grep -v '^PWD=\|^SHLVL=\|^_=' | tr '\n' ' '; echo
echo reading >> "$1" && echo "events: written"
echo x > "$2/queue" && echo "data: written"
cat "$3" 2>/dev/null && echo "ledger: READ" || echo "ledger: hidden"
echo forged >> "$4" 2>/dev/null && echo "runtime evidence: WRITTEN" || echo "runtime evidence: refused"
touch "$(dirname "$1")/new.jsonl" 2>/dev/null && echo "new evidence: WRITTEN" || echo "new evidence: refused"
nsenter --net=/proc/1/ns/net true 2>/dev/null && echo "host netns: ENTERED" || echo "host netns: refused"
`
	args := strings.Join([]string{events, data, filepath.Join(ledger, "f.json"), filepath.Join(filepath.Dir(events), "n1-runtime.jsonl")}, " ")
	out, err := run(t, s, "set -- "+args+"\n"+script)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	for _, want := range []string{
		"id=70123:70123 pwd=" + data,
		"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000",
		"NoNewPrivs:\t1",
		"events: written", "data: written", "ledger: hidden", "runtime evidence: refused", "new evidence: refused", "host netns: refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EDGEFAULT_SANDBOX") || !strings.Contains(out, "APP=1") {
		t.Errorf("the environment leaked:\n%s", out)
	}
	// The host saw the writes to what was given, nothing else.
	if b, _ := os.ReadFile(events); string(b) != "reading\n" {
		t.Errorf("events on the host: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(filepath.Dir(events), "n1-runtime.jsonl")); len(b) != 0 {
		t.Errorf("the runtime's evidence was changed: %q", b)
	}
	// And the host's mounts are as they were.
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), top) {
		t.Errorf("a sandbox mount leaked into the host's namespace")
	}
}

// A command the user cannot execute is refused with what to do.
func TestNotExecutable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("confining a command needs root; CI runs as root")
	}
	dir := t.TempDir() // 0700, root's
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path, args, env, err := Wrap("/proc/self/exe", Spec{UID: 70124, GID: 70124}, []string{bin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := (&exec.Cmd{Path: path, Args: args, Env: env}).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "runs as uid 70124") || !strings.Contains(string(out), "/usr/local/bin") {
		t.Fatalf("want a refusal that says what to do, got %v:\n%s", err, out)
	}
}

func TestSpecCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Spec
		bad  string
	}{
		{"root", Spec{UID: 0, GID: 0}, "not root"},
		{"relative", Spec{UID: 7, GID: 7, Hide: []string{"state"}}, "absolute"},
		{"unclean", Spec{UID: 7, GID: 7, Writable: []string{"/a/../b"}}, "clean"},
		{"slash", Spec{UID: 7, GID: 7, Hide: []string{"/"}}, "not /"},
		{"fine", Spec{UID: 7, GID: 7, Hide: []string{"/run/x"}, Writable: []string{"/run/x/d"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Check()
			if (err == nil) != (tc.bad == "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
				t.Fatalf("Check() = %v, want %q", err, tc.bad)
			}
		})
	}
}
