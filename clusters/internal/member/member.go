// Package member reaches a fleet member that is a network namespace on this
// machine (an embedded fleet's namespace, a container's): processes started
// inside it and recorded in the ledger, dialling and listening from inside
// it, its traffic counters and its per-namespace sysctls. Providers share it
// so that a member behaves the same whatever made its namespace.
package member

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/internal/sandbox"
	"github.com/edgefault/edgefault/ledger"
)

// NS is a member's network namespace: a name under /run/netns or a path
// (/proc/PID/ns/net).
type NS struct {
	// Member is the member's name (NODE_NAME of what runs there).
	Member string
	// Path is the namespace (a name under /run/netns, or a path).
	Path string
}

// Runner starts processes in members' namespaces, recording each in a
// ledger under owner and writing its output to a log in LogDir.
type Runner struct {
	Ledger *ledger.Ledger
	Owner  string
	LogDir string
}

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

var _ clusters.Process = (*Process)(nil)

var processNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Start runs argv in ns in the background, its output in a log file,
// recorded in the ledger so cleanup stops it even if the caller dies. name
// labels it (and its log file).
func (r Runner) Start(ctx context.Context, ns NS, name string, argv []string, env ...string) (*Process, error) {
	return r.StartCommand(ctx, ns, clusters.Command{Name: name, Argv: argv, Env: env})
}

// sandboxPath is what a sandboxed command's PATH is.
const sandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// StartCommand is Start for c (c.Image is the caller's to refuse); with
// c.Sandbox it is confined (internal/sandbox), the ledger's directory and
// everything beside it (fleets, evidence) hidden from it.
func (r Runner) StartCommand(ctx context.Context, ns NS, c clusters.Command) (*Process, error) {
	name, argv, env := c.Name, c.Argv, c.Env
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command to run on %s", ns.Member)
	}
	// The name becomes part of the log's file name.
	if !processNameRE.MatchString(name) {
		return nil, fmt.Errorf("process name %q on %s: use letters, digits, '-' and '_'", name, ns.Member)
	}
	if err := os.MkdirAll(r.LogDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(r.LogDir, ns.Member+"-"+name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "NODE_NAME="+ns.Member), env...)
	if sb := c.Sandbox; sb != nil {
		// Nothing of the harness's environment: a PATH, a HOME, where it
		// is, and what the caller gives.
		env := append([]string{"PATH=" + sandboxPath, "HOME=" + sb.Dir, "NODE_NAME=" + ns.Member}, env...)
		spec := sandbox.Spec{UID: sb.UID, GID: sb.GID, Hide: append([]string{filepath.Dir(r.Ledger.Dir())}, sb.Hide...), Writable: sb.Writable, Dir: sb.Dir}
		// It runs from its data directory: a relative command is the
		// caller's.
		if argv[0] != filepath.Base(argv[0]) && !filepath.IsAbs(argv[0]) {
			abs, err := filepath.Abs(argv[0])
			if err != nil {
				return nil, err
			}
			argv = append([]string{abs}, argv[1:]...)
		}
		path, args, wenv, err := sandbox.Wrap(r.Ledger.Helper(), spec, argv, env)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", name, ns.Member, err)
		}
		cmd = &exec.Cmd{Path: path, Args: args, Env: wenv}
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	e, err := r.Ledger.Start(r.Owner, fmt.Sprintf("%s on %s", name, ns.Member), cmd, true,
		func(c *exec.Cmd) error { return nsdo.Do(ns.Path, c.Start) })
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", argv[0], ns.Member, err)
	}
	p := &Process{Member: ns.Member, Name: name, PID: e.PID, Log: logPath, entry: e, owner: r.Owner, l: r.Ledger, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exec runs argv in ns to completion with the given standard streams and
// returns its error (an *exec.ExitError on a non-zero exit).
func (r Runner) Exec(ctx context.Context, ns NS, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command to run on %s", ns.Member)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "NODE_NAME="+ns.Member)
	// Its own process group, so that when ctx ends (Ctrl-C, SIGTERM) the
	// whole group is asked to stop with SIGTERM and may shut down
	// cleanly; what is left after WaitDelay is killed. Recorded like
	// every process the fleet runs, so that taking the fleet down stops
	// it (and what it started in the background) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	e, err := r.Ledger.Start(r.Owner, fmt.Sprintf("exec %s on %s", filepath.Base(argv[0]), ns.Member), cmd, true,
		func(c *exec.Cmd) error { return nsdo.Do(ns.Path, c.Start) })
	if err != nil {
		return fmt.Errorf("run %s on %s: %w", argv[0], ns.Member, err)
	}
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers in its group
	// Forgotten, unless the fleet went down meanwhile (its ledger with it).
	if es, _ := r.Ledger.Entries(r.Owner); slices.ContainsFunc(es, func(o ledger.Entry) bool { return o.Key() == e.Key() }) {
		_ = r.Ledger.Forget(r.Owner, e)
	}
	if err != nil && ctx.Err() != nil && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil // asked to stop, and it stopped cleanly
	}
	return err
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

// Signal sends sig to the process and everything it started (its process
// group): SIGKILL is how a scenario crashes a runtime.
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(-p.PID, sig) }

// Done is closed when the process has exited; Wait then returns at once.
func (p *Process) Done() <-chan struct{} { return p.done }

// ID is "pid N".
func (p *Process) ID() string { return "pid " + strconv.Itoa(p.PID) }

// LogPath is the process's log file.
func (p *Process) LogPath() string { return p.Log }

// Host dials and listens from inside the namespace ns (a name or a path).
type Host string

var _ clusters.Host = Host("")

func (h Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsdo.DialContext(string(h))(ctx, network, addr)
}

func (h Host) Listen(network, addr string) (l net.Listener, err error) {
	err = nsdo.Do(string(h), func() error { l, err = net.Listen(network, addr); return err })
	return l, err
}

func (h Host) ListenPacket(network, addr string) (c net.PacketConn, err error) {
	err = nsdo.Do(string(h), func() error { c, err = net.ListenPacket(network, addr); return err })
	return c, err
}

// Counters sums the bytes received and sent on every interface of the
// namespace ns but loopback.
func Counters(ns string) (rx, tx int64, err error) {
	var b []byte
	err = nsdo.Do(ns, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 9 {
			continue
		}
		r, _ := strconv.ParseInt(fs[0], 10, 64)
		t, _ := strconv.ParseInt(fs[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx, nil
}

var (
	// Per-namespace keys only: some net/core keys are the host's, and
	// writing them from a member's namespace would change the machine.
	sysctlKeyRE   = regexp.MustCompile(`^net/(ipv4|ipv6)(/[A-Za-z0-9_.-]+)+$|^net/core/somaxconn$`)
	sysctlValueRE = regexp.MustCompile(`^[A-Za-z0-9 _.:,-]{1,256}$`)
)

// Sysctl writes /proc/sys/KEY inside the namespace ns: only per-namespace
// net/... keys, and plain values.
func Sysctl(ns, key, value string) error {
	if !sysctlKeyRE.MatchString(key) || strings.Contains(key, "..") {
		return fmt.Errorf("sysctl %q: only per-namespace keys (net/ipv4/..., net/ipv6/..., net/core/somaxconn) can be set on a member", key)
	}
	if !sysctlValueRE.MatchString(value) {
		return fmt.Errorf("sysctl %s value %q: give numbers or words on one line", key, value)
	}
	return nsdo.Do(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0)
	})
}

// Collect copies the evidence (*.jsonl) and logs (*.log) under from into
// dir/evidence and dir/logs; a file of the same name there is replaced,
// others are left.
func Collect(from, dir string) error {
	var errs []error
	for _, sub := range []struct{ name, glob string }{{"evidence", "*.jsonl"}, {"logs", "*.log"}} {
		to := filepath.Join(dir, sub.name)
		if err := os.MkdirAll(to, 0o755); err != nil {
			return fmt.Errorf("collect evidence: %w", err)
		}
		files, _ := filepath.Glob(filepath.Join(from, sub.name, sub.glob))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil {
				err = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("collect %s: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ErrBusy: another process holds a fleet's lock.
var ErrBusy = errors.New("busy")

// LockFleet takes fleet name's lock, a file beside the ledger l that
// every provider takes for the name (a fleet name is one across
// providers), failing at once (ErrBusy) if another process holds it. The
// lock goes with the process, also when it crashes.
func LockFleet(l *ledger.Ledger, name string) (unlock func(), err error) {
	dir := filepath.Join(filepath.Dir(l.Dir()), "fleets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock fleet %q: %w", name, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock fleet %q: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("fleet %q is being brought up or taken down by another edgefault: wait for it, or pick another --fleet: %w", name, ErrBusy)
		}
		return nil, fmt.Errorf("lock fleet %q: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// WaitLockFleet is LockFleet, waiting for an Up or Down of the name in
// progress in another process to finish, as long as ctx lets it.
func WaitLockFleet(ctx context.Context, l *ledger.Ledger, name string) (unlock func(), err error) {
	for {
		if unlock, err = LockFleet(l, name); !errors.Is(err, ErrBusy) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
