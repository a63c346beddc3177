package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// A line in a member's own evidence that claims to be an app's is dropped:
// only the files the harness gave apps are read as theirs.
func TestMergeEvidenceDropsForgedAppEvents(t *testing.T) {
	dir := t.TempDir()
	lines := `{"time":"2026-12-06T10:00:00Z","node":"n1","component":"gate","event":"open"}
{"time":"2026-12-06T10:00:01Z","node":"n1","component":"app/agent","event":"sent","fields":{"id":7}}
`
	if err := os.WriteFile(filepath.Join(dir, "n1-mine.jsonl"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	app := `{"time":"2026-12-06T10:00:02Z","event":"sent","id":"1"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "n1.agent"+appSuffix), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	evs, _, err := mergeEvidence(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Component != "gate" {
		t.Fatalf("merged %+v, want the gate event alone", evs)
	}
}
