package member

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A fleet's state is written whole (0600) and read back; a fleet without
// one is not up and is not listed; a damaged one names its file.
func TestStateRoundTrip(t *testing.T) {
	root := t.TempDir()
	type state struct {
		Name  string   `json:"name"`
		Nodes []string `json:"nodes"`
	}
	want := state{Name: "lab", Nodes: []string{"pi-1", "pi-2"}}
	for _, n := range []string{"lab", "empty", "broken"} {
		if err := os.MkdirAll(filepath.Join(root, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := SaveState(filepath.Join(root, "lab"), want); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "broken", StateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "lab", StateFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v, want mode 0600", fi, err)
	}
	var got state
	if err := LoadState(filepath.Join(root, "lab"), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LoadState: %+v %v, want %+v", got, err, want)
	}
	if err := LoadState(filepath.Join(root, "empty"), &got); !errors.Is(err, ErrNoState) {
		t.Errorf("a fleet without state: %v, want ErrNoState", err)
	}
	if err := LoadState(filepath.Join(root, "broken"), &got); err == nil || errors.Is(err, ErrNoState) {
		t.Errorf("a damaged state: %v", err)
	}
	names, err := ListStates(root)
	if err != nil || !reflect.DeepEqual(names, []string{"broken", "lab"}) {
		t.Errorf("ListStates: %v %v, want [broken lab]", names, err)
	}
	if names, err := ListStates(filepath.Join(root, "none")); err != nil || names != nil {
		t.Errorf("ListStates of no directory: %v %v", names, err)
	}
}
