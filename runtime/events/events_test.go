package events

import (
	"os"
	"path/filepath"
	"testing"
)

// A log past its bound is rotated, once: at most two files, every line
// whole, the newest events in the current file.
func TestLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n-speedserver.jsonl")
	l, err := OpenMax(path, "n", "speedserver", nil, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		l.Emit("served", "i", i, "bytes", 1<<20)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
	if len(files) != 2 {
		t.Fatalf("files %v, want the log and one rotated", files)
	}
	for _, f := range []string{path, Rotated(path)} {
		st, err := os.Stat(f)
		if err != nil || st.Size() > 4096+200 {
			t.Errorf("%s: %v, %d bytes", f, err, st.Size())
		}
		evs, err := Read(f)
		if err != nil || len(evs) == 0 {
			t.Errorf("%s: %d events, %v", f, len(evs), err)
		}
	}
	evs, _ := Read(path)
	if last := evs[len(evs)-1]; last.Fields["i"] != float64(499) {
		t.Errorf("the newest event is not in the current file: %+v", last)
	}
}
