package netns

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
)

// Process is a process running in a member's namespace.
type Process struct {
	Member string
	Name   string
	PID    int
	// Log holds the process's stdout and stderr.
	Log   string
	entry ledger.Entry
	owner string
	l     *ledger.Ledger
	done  chan struct{}
	err   error
}

// startIn starts cmd from a thread inside the namespace at nsPath: a child
// inherits the network namespace of the thread that forks it.
func startIn(nsPath string, cmd *exec.Cmd) error {
	return nsdo.Do(nsPath, cmd.Start)
}

var processNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Start runs argv in member's namespace in the background, its output in a
// log file, recorded in the ledger so cleanup stops it even if the caller
// dies. name labels it (and its log file).
func (f *Fleet) Start(ctx context.Context, memberName, name string, argv []string, env ...string) (*Process, error) {
	m, err := f.find(memberName)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command to run on %s", memberName)
	}
	// The name becomes part of the log's file name.
	if !processNameRE.MatchString(name) {
		return nil, fmt.Errorf("process name %q on %s: use letters, digits, '-' and '_'", name, memberName)
	}
	logDir := filepath.Join(f.p.stateDir, f.FleetName, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, m.Name+"-"+name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "NODE_NAME="+m.Name), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	nsPath := "/run/netns/" + m.Namespace
	e, err := f.p.ledger.Start(f.FleetName, fmt.Sprintf("%s on %s", name, m.Name), cmd, true,
		func(c *exec.Cmd) error { return startIn(nsPath, c) })
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", argv[0], m.Name, err)
	}
	p := &Process{Member: m.Name, Name: name, PID: e.PID, Log: logPath, entry: e, owner: f.FleetName, l: f.p.ledger, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Wait waits for the process to exit. What it started in the background
// stays recorded (and is stopped by Stop or cleanup).
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if !ledger.GroupAlive(p.PID) {
			_ = p.l.Forget(p.owner, p.entry)
		}
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops the process and everything it started (its process group:
// SIGTERM, then SIGKILL after grace).
func (p *Process) Stop(grace time.Duration) error {
	if err := ledger.StopProcess(p.entry, grace); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(grace + time.Second):
	}
	return p.l.Forget(p.owner, p.entry)
}

// Exec runs argv in member's namespace to completion with the given
// standard streams and returns its error (an *exec.ExitError on a non-zero
// exit).
func (f *Fleet) Exec(ctx context.Context, memberName string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	m, err := f.find(memberName)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return fmt.Errorf("no command to run on %s", memberName)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "NODE_NAME="+m.Name)
	// Its own process group, so that when ctx ends (Ctrl-C, SIGTERM) the
	// whole group is asked to stop with SIGTERM and may shut down
	// cleanly; what is left after WaitDelay is killed. Recorded like
	// every process the fleet runs, so that taking the fleet down stops
	// it (and what it started in the background) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	nsPath := "/run/netns/" + m.Namespace
	e, err := f.p.ledger.Start(f.FleetName, fmt.Sprintf("exec %s on %s", filepath.Base(argv[0]), m.Name), cmd, true,
		func(c *exec.Cmd) error { return startIn(nsPath, c) })
	if err != nil {
		return fmt.Errorf("run %s on %s: %w", argv[0], m.Name, err)
	}
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers in its group
	// Forgotten, unless the fleet went down meanwhile (its ledger with it).
	if es, _ := f.p.ledger.Entries(f.FleetName); slices.ContainsFunc(es, func(o ledger.Entry) bool { return o.Key() == e.Key() }) {
		_ = f.p.ledger.Forget(f.FleetName, e)
	}
	if err != nil && ctx.Err() != nil && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil // asked to stop, and it stopped cleanly
	}
	return err
}

// Dir is the fleet's own state directory (process logs, evidence); it is
// removed when the fleet is taken down.
func (f *Fleet) Dir() string { return filepath.Join(f.p.stateDir, f.FleetName) }

// Signal sends sig to the process and everything it started (its process
// group): SIGKILL is how a scenario crashes a runtime.
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(-p.PID, sig) }

// Done is closed when the process has exited; Wait then returns at once.
func (p *Process) Done() <-chan struct{} { return p.done }
