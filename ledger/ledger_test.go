package ledger

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordForgetEntries(t *testing.T) {
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := Entry{Kind: KindNetns, Name: "f-a"}
	b := Entry{Kind: KindLink, Name: "eth0", Netns: "f-a"}
	c := Entry{Kind: KindNetns, Name: "f-b"}
	if err := l.Record("f", a, b, c); err != nil {
		t.Fatal(err)
	}
	if err := l.Forget("f", b); err != nil {
		t.Fatal(err)
	}
	got, err := l.Entries("f")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "f-a" || got[1].Name != "f-b" {
		t.Fatalf("entries = %+v, want f-a and f-b", got)
	}
	owners, _ := l.Owners()
	if len(owners) != 1 || owners[0] != "f" {
		t.Fatalf("owners = %v", owners)
	}
	if err := l.Drop("f"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Entries("f"); len(got) != 0 {
		t.Fatalf("after drop: %v", got)
	}
}

func TestTornLastLineIsTolerated(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir)
	if err := l.Record("f", Entry{Kind: KindNetns, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(dir, "f.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"netns","na`)
	f.Close()
	got, err := l.Entries("f")
	if err != nil || len(got) != 1 {
		t.Fatalf("entries=%v err=%v", got, err)
	}
	// Later entries still count after a torn line in the middle.
	if err := l.Record("f", Entry{Kind: KindNetns, Name: "y"}); err != nil {
		t.Fatal(err)
	}
	got, err = l.Entries("f")
	if err != nil || len(got) != 2 || got[1].Name != "y" {
		t.Fatalf("after a torn line: entries=%v err=%v", got, err)
	}
}

func TestForgetRemovesEveryCopy(t *testing.T) {
	l, _ := Open(t.TempDir())
	e := Entry{Kind: KindNftable, Netns: "/run/netns/x", Family: "inet", Name: "edgefault-eth0"}
	_ = l.Record("f", e, e, Entry{Kind: KindNetns, Name: "x"})
	_ = l.Forget("f", e)
	got, _ := l.Entries("f")
	if len(got) != 1 || got[0].Kind != KindNetns {
		t.Fatalf("entries = %+v", got)
	}
}

func TestInvalidOwner(t *testing.T) {
	l, _ := Open(t.TempDir())
	for _, o := range []string{"", "../x", "a b", "-x"} {
		if err := l.Record(o, Entry{Kind: KindNetns}); err == nil {
			t.Errorf("owner %q accepted", o)
		}
	}
}

func TestProcessIdentity(t *testing.T) {
	e, err := ProcessEntry(os.Getpid(), "self")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Alive() {
		t.Fatal("own process not alive")
	}
	e.StartTime++
	if e.Alive() {
		t.Fatal("a different start time must not count as the same process")
	}
}

// The sweep removes state only inside the directory the ledger lives in:
// an entry naming anything else (directly, or through a symlink) is
// refused and kept, and the path survives.
func TestSweepRemovesStateOnlyInsideItsDirectory(t *testing.T) {
	state := t.TempDir()
	l, err := Open(filepath.Join(state, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	victim := filepath.Join(outside, "precious")
	if err := os.WriteFile(victim, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(state, "link")); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(state, "fleets", "f.json")
	if err := os.MkdirAll(filepath.Dir(inside), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inside, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{victim, filepath.Join(state, "link", "precious"), state, inside} {
		if err := l.Record("f", Entry{Kind: KindState, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	err = l.Sweep("f", nil)
	if err == nil || !strings.Contains(err.Error(), "not inside edgefault's state directory") {
		t.Errorf("sweep: %v, want a refusal", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the path outside was removed: %v", err)
	}
	if _, err := os.Stat(inside); !os.IsNotExist(err) {
		t.Errorf("the state inside was not removed: %v", err)
	}
	left, _ := l.Entries("f")
	if len(left) != 3 {
		t.Errorf("%d entries kept, want the 3 refused: %+v", len(left), left)
	}
}
