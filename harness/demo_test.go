package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportFiles(t *testing.T) {
	r := &DemoReport{Fleet: "f", Backend: "fallback", Steps: []Step{
		{Name: "baseline", GoodputMbit: 47.8, RTTMillis: 21.5, Expect: "goodput 40-52", Pass: true},
		{Name: "uplink outage", Expect: "stalls", Detail: "connection lost: reset", Pass: false},
	}}
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "demo.md"))
	if !strings.Contains(string(md), "# edgefault demo: FAIL") || !strings.Contains(string(md), "connection lost: reset") || !strings.Contains(string(md), "47.80 Mbit/s") {
		t.Errorf("demo.md:\n%s", md)
	}
	var back DemoReport
	b, _ := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back.Steps) != 2 || back.Steps[1].Pass {
		t.Errorf("demo.json round trip: %v %+v", err, back)
	}
}
