package procmem

import (
	"os"
	"os/exec"
	"testing"
)

// A process's child is counted with it, and memory is read as bytes.
func TestOfCountsDescendants(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	self := Of([]int{os.Getpid()})
	if self.Processes != 2 {
		t.Fatalf("this test and its sleep: %d processes", self.Processes)
	}
	alone := RSS(os.Getpid())
	if alone < 1<<20 || self.RSS <= alone || self.PSS == 0 || self.PSS > self.RSS || self.Anon == 0 || self.Anon > self.RSS {
		t.Fatalf("rss alone %d, with the child %d, anon %d, pss %d", alone, self.RSS, self.Anon, self.PSS)
	}
	if u := Of([]int{1 << 30}); u.Processes != 0 || u.RSS != 0 {
		t.Fatalf("a PID that does not exist counted: %+v", u)
	}
}
