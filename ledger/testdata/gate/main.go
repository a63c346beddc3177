// Command gate is a minimal helper binary for ledger tests: it serves as
// the start gate (ledger.WithHelper) and nothing else. Before it turns into
// the program it gates it touches $GATE_MARK, so a test can tell that it,
// and not the test binary, was the gate.
package main

import (
	"fmt"
	"os"

	"github.com/edgefault/edgefault/ledger"
)

func main() {
	if m := os.Getenv("GATE_MARK"); m != "" {
		_ = os.WriteFile(m, []byte(os.Args[0]+"\n"), 0o644)
	}
	ledger.RunGateIfInvoked()
	fmt.Fprintln(os.Stderr, "gate: not started by ledger.Start")
	os.Exit(2)
}
