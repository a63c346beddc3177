package ledger

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// gateName is argv[0] of a process waiting to be recorded; gateFDEnv
// names the descriptor it waits on.
const (
	gateName  = "edgefault-gate"
	gateFDEnv = "EDGEFAULT_GATE_FD"
	// markEnv carries Entry.Mark to the process and its children.
	markEnv = "EDGEFAULT_LEDGER_MARK"
)

// RunGateIfInvoked turns this process into the program it was started for,
// once its parent has recorded it, if it was started by Start; otherwise it
// returns at once. The ledger's helper binary (see WithHelper; by default
// the binary that calls Start) must call it first thing in main (and in
// TestMain).
func RunGateIfInvoked() {
	if filepath.Base(os.Args[0]) != gateName {
		return
	}
	fd, err := strconv.Atoi(os.Getenv(gateFDEnv))
	if err != nil || len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "edgefault-gate: started without a gate")
		os.Exit(126)
	}
	f := os.NewFile(uintptr(fd), "gate")
	line, _ := bufio.NewReader(f).ReadString('\n')
	f.Close()
	if strings.TrimSpace(line) != "go" {
		// The parent died before it could record us: run nothing, so
		// nothing exists that the ledger does not know.
		os.Exit(125)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, gateFDEnv+"=") {
			env = append(env, e)
		}
	}
	err = syscall.Exec(os.Args[1], os.Args[2:], env)
	fmt.Fprintf(os.Stderr, "edgefault-gate: exec %s: %v\n", os.Args[1], err)
	os.Exit(127)
}

// Start starts cmd so that it is in the ledger before it runs: the child
// begins as the ledger's helper (Helper: by default a copy of this binary;
// see WithHelper and RunGateIfInvoked) that waits until its PID and start
// time are recorded, then executes cmd in place (same PID, same
// namespaces). If this process dies before recording, the child
// exits without running anything. start does the actual fork (for
// example from a thread inside another network namespace); nil means
// cmd.Start. The entry is returned, recorded under owner.
func (l *Ledger) Start(owner, name string, cmd *exec.Cmd, group bool, start func(*exec.Cmd) error) (Entry, error) {
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if cmd.Err != nil { // the program was not found
		return Entry{}, cmd.Err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Entry{}, err
	}
	defer w.Close()
	target, argv := cmd.Path, cmd.Args
	if len(argv) == 0 {
		argv = []string{target}
	}
	cmd.Path = l.Helper()
	cmd.Args = append([]string{gateName, target}, argv...)
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	var m [8]byte
	_, _ = rand.Read(m[:])
	mark := hex.EncodeToString(m[:])
	cmd.Env = append(env, fmt.Sprintf("%s=%d", gateFDEnv, 2+len(cmd.ExtraFiles)), markEnv+"="+mark)
	err = start(cmd)
	r.Close()
	if err != nil {
		return Entry{}, err
	}
	e, err := ProcessEntry(cmd.Process.Pid, name)
	if err == nil {
		e.Group, e.Mark = group, mark
		err = l.Record(owner, e)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return Entry{}, fmt.Errorf("record %s: %w", name, err)
	}
	if _, err := w.Write([]byte("go\n")); err != nil {
		return e, fmt.Errorf("start %s: %w", name, err)
	}
	return e, nil
}
