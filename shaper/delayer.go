package shaper

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/internal/sandbox"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper/internal/delayer"
	"github.com/vishvananda/netns"
)

// exitQueueBusy is the helper's exit status when another process holds
// its queue (a delayer it replaces, still draining).
const exitQueueBusy = 3

// errQueueBusy says the queue is held by another process.
var errQueueBusy = errors.New("queue held by another process")

// helperName is argv[0] of a delayer helper process. The helper binary
// (WithHelper; by default the binary that links the shaper) must call
// RunHelperIfInvoked first thing in main (and in TestMain), so the shaper
// can start it detached.
const helperName = "edgefault-delayer"

// delayerState is one running delayer helper.
type delayerState struct {
	PID       int           `json:"pid"`
	StartTime uint64        `json:"startTime"`
	Netns     string        `json:"netns"`
	Queue     uint16        `json:"queue"`
	Delay     time.Duration `json:"delay"`
	Jitter    time.Duration `json:"jitter"`
	Loss      float64       `json:"loss,omitempty"`
	Seed      uint64        `json:"seed,omitempty"`
}

func (d *delayerState) args() delayerArgs {
	return delayerArgs{Delay: d.Delay, Jitter: d.Jitter, Loss: d.Loss, Seed: d.Seed}
}

func (d *delayerState) entry() ledger.Entry {
	return ledger.Entry{Kind: ledger.KindProcess, PID: d.PID, StartTime: d.StartTime, Name: delayerName(d.Queue, d.Netns)}
}

// delayerName names a delayer helper in the ledger.
func delayerName(queue uint16, nsPath string) string {
	return fmt.Sprintf("%s queue %d in %s", helperName, queue, nsPath)
}

// RunHelperIfInvoked runs the delayer helper (or the ledger's start gate,
// or a sandboxed command's confinement: internal/sandbox) and exits if
// this process was started as one; otherwise it returns at once.
func RunHelperIfInvoked() {
	ledger.RunGateIfInvoked()
	sandbox.RunIfInvoked()
	if filepath.Base(os.Args[0]) != helperName {
		return
	}
	os.Exit(helperMain(os.Args[1:]))
}

func helperMain(args []string) int {
	fs := flag.NewFlagSet(helperName, flag.ContinueOnError)
	nsPath := fs.String("netns", "", "namespace path")
	queue := fs.Uint("queue", 0, "nfqueue number")
	delay := fs.Duration("delay", 0, "delay")
	jitter := fs.Duration("jitter", 0, "jitter")
	loss := fs.Float64("loss", 0, "percent of packets to drop, drawn from -seed")
	seed := fs.Uint64("seed", 0, "what loss and jitter draw from (0: random)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("queue", *queue, "netns", *nsPath)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	nsfd := 0
	if *nsPath != "" {
		h, err := netns.GetFromPath(*nsPath)
		if err != nil {
			log.Error("open namespace", "err", err)
			return 1
		}
		defer h.Close()
		nsfd = int(h)
	}
	readyFile := os.NewFile(3, "ready")
	st, err := delayer.Run(ctx, delayer.Config{NetNS: nsfd, Queue: uint16(*queue), Delay: *delay, Jitter: *jitter, Loss: *loss, Seed: *seed}, log, func() {
		if readyFile != nil {
			fmt.Fprintln(readyFile, "ready")
			readyFile.Close()
		}
	})
	if err != nil {
		log.Error("delayer", "err", err)
		if errors.Is(err, syscall.EPERM) {
			return exitQueueBusy
		}
		return 1
	}
	log.Info("delayer stopped", "packets", st.Packets, "dropped", st.Dropped, "failed", st.Failed, "maxDepth", st.MaxDepth)
	return 0
}

// startDelayer starts a detached helper serving queue in the namespace at
// nsPath, records it in the ledger and waits until it is bound, so the nft
// rule that feeds it can be installed without dropping a packet.
func (s *Shaper) startDelayer(ctx context.Context, nsPath string, queue uint16, a delayerArgs) (*delayerState, error) {
	logPath := filepath.Join(s.stateDir, fmt.Sprintf("delayer-%d.log", queue))
	if nsPath != "" {
		logPath = filepath.Join(s.stateDir, fmt.Sprintf("delayer-%s-%d.log", filepath.Base(nsPath), queue))
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("delayer log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := &exec.Cmd{
		// The helper binary (see WithHelper): the ledger's gate runs as
		// the same binary and executes this path, so even /proc/self/exe
		// still names it then.
		Path: s.ledger.Helper(),
		Args: []string{helperName, "-netns", nsPath, "-queue", fmt.Sprint(queue), "-delay", a.Delay.String(), "-jitter", a.Jitter.String(),
			"-loss", strconv.FormatFloat(a.Loss, 'g', -1, 64), "-seed", strconv.FormatUint(a.Seed, 10)},
		// Its own session: it outlives a one-shot `edgefault shape` and is
		// not hit by the terminal's Ctrl-C; cleanup stops it by PID.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		Stdout:      logf,
		Stderr:      logf,
		ExtraFiles:  []*os.File{w},
	}
	// Recorded before it runs, so a crash of ours never leaves an
	// unrecorded helper holding a namespace open.
	e, err := s.ledger.Start(s.owner, delayerName(queue, nsPath), cmd, false, nil)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("start delayer helper: %w", err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }() // reap it if it exits while we live
	d := &delayerState{PID: e.PID, StartTime: e.StartTime, Netns: nsPath, Queue: queue, Delay: a.Delay, Jitter: a.Jitter, Loss: a.Loss, Seed: a.Seed}
	readyc := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err == nil && strings.TrimSpace(line) == "ready" {
			readyc <- nil
			return
		}
		if err == io.EOF {
			err = fmt.Errorf("it exited")
			var ee *exec.ExitError
			if werr := <-waitc; errors.As(werr, &ee) && ee.ExitCode() == exitQueueBusy {
				err = errQueueBusy
			}
		}
		readyc <- err
	}()
	select {
	case err = <-readyc:
	case <-time.After(5 * time.Second):
		err = fmt.Errorf("not ready after 5s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = s.stopDelayer(d)
		if errors.Is(err, errQueueBusy) {
			return nil, fmt.Errorf("delayer helper for queue %d: %w", queue, err)
		}
		msg, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("delayer helper for queue %d: %w; its log (%s): %s", queue, err, logPath, lastLines(string(msg), 3))
	}
	return d, nil
}

// stopDelayer stops a helper; it releases what it holds on time first.
func (s *Shaper) stopDelayer(d *delayerState) error {
	if d == nil {
		return nil
	}
	e := d.entry()
	grace := 3*(d.Delay+d.Jitter) + 2*time.Second
	if err := ledger.StopProcess(e, grace); err != nil {
		return err
	}
	return s.ledger.Forget(s.owner, e)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
