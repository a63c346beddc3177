// Command edgeguard is the edgefault fault-tolerance runtime: the one slim
// binary that runs inside a cluster (on nodes, in the cloud, in pods). It
// serves the speed gate (edgeguard serve), waits on it from an init
// container (gate wait), answers exec probes (gate check), and runs the
// cloud's speed-test and content servers and the sample workloads. It is
// also a helper binary for edgefault's shaper and ledger (their NFQUEUE
// delayer and start gate; see shaper.WithHelper and ledger.WithHelper), so
// a program that cannot serve as its own helper, such as a user's test
// binary that imports the harness, can use it.
//
// Exit codes: 0 success; 1 error (bad flags, cannot listen, ...); 2 the
// gate did not open before --timeout (gate wait) or is not open (gate
// check); 3 gate check could not reach edgeguard serve; 130 interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/runtime/dial"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

// Exit codes (documented in the package comment and --help).
const (
	exitError       = 1
	exitNotOpen     = 2
	exitUnreachable = 3
	exitInterrupted = 130
)

// exitCode is an error that carries the exit status to use.
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return e.msg }

func main() {
	// First: a delayer helper or start gate exits (or execs) here.
	shaper.RunHelperIfInvoked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		return
	}
	var ec exitCode
	if errors.As(err, &ec) {
		if ec.msg != "" {
			fmt.Fprintln(os.Stderr, "edgeguard:", ec.msg)
		}
		os.Exit(ec.code)
	}
	fmt.Fprintln(os.Stderr, "edgeguard:", err)
	os.Exit(exitError)
}

type globals struct {
	node   string
	events string
	log    *slog.Logger
	// dns and dnsStale: how the cloud's names are resolved (--dns,
	// --dns-stale); dialer is made from them once.
	dns      string
	dnsStale bool
	dialOnce sync.Once
	dialer   *dial.Dialer
	dialErr  error
}

// dial is the dialer of the cloud's servers (the sink, the speed-test
// server): names resolved with --dns or the system's resolver, on the last
// good answer when a lookup fails or is late (unless --dns-stale=false).
func (g *globals) dial() (*dial.Dialer, error) {
	g.dialOnce.Do(func() {
		opts := []dial.Option{dial.WithEvents(g.openEvents("dns"))}
		if g.dns != "" {
			host, port, err := net.SplitHostPort(g.dns)
			if err != nil || net.ParseIP(host) == nil || port == "" {
				g.dialErr = fmt.Errorf("--dns %q: give the DNS server as IP:PORT, e.g. 10.0.0.53:53", g.dns)
				return
			}
			opts = append(opts, dial.WithServer(g.dns))
		}
		if !g.dnsStale {
			opts = append(opts, dial.WithoutStale())
		}
		g.dialer = dial.New(opts...)
	})
	return g.dialer, g.dialErr
}

// sleepCtx sleeps d unless ctx ends first; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// openEvents opens the event log for component. Evidence is best effort:
// an unwritable path is a loud warning, never a reason not to run (a gate
// that crash-loops over its log directory would hold its workload for
// nothing).
func (g *globals) openEvents(component string) *events.Log {
	// The cloud's speed-test and content servers log every request:
	// their logs are rotated. The rest is evidence, judged whole.
	max := int64(0)
	if component == "speedserver" || component == "content" {
		max = events.DefaultMaxBytes
	}
	ev, err := events.OpenMax(g.events, g.node, component, g.log, max)
	if err != nil {
		g.log.Error("events will not be recorded", "err", err)
		ev, _ = events.Open("", g.node, component, g.log)
	}
	return ev
}

func newRoot() *cobra.Command {
	g := &globals{}
	host, _ := os.Hostname()
	if n := os.Getenv("NODE_NAME"); n != "" {
		host = n
	}
	root := &cobra.Command{
		Use:   "edgeguard",
		Short: "Fault-tolerance runtime for edge nodes on bad links",
		Long: `edgeguard keeps edge workloads sane on bad links: a speed gate holds or pauses
a workload while the link is too slow and resumes it when the link recovers,
and a durable store-and-forward buffer keeps records on local disk while the
uplink is unusable and delivers them to the cloud's sink exactly once, in
order, when it returns. It also runs the cloud side used by tests and
air-gapped sites (speedserver, content, sink) and the sample workloads.

Exit codes: 0 ok; 1 error; 2 gate not open (wait timed out, or check);
3 gate check could not reach edgeguard serve; 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRun: func(*cobra.Command, []string) {
			g.log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", g.node)
			slog.SetDefault(g.log)
			applyMemoryLimit(g.log)
		},
	}
	root.PersistentFlags().StringVar(&g.node, "node", host, "node name stamped on events, on buffered records' keys and so in the sink's reports ($NODE_NAME, else the hostname)")
	root.PersistentFlags().StringVar(&g.events, "events", "", "append events (JSON lines) to this file; - for stdout; empty: none")
	root.PersistentFlags().StringVar(&g.dns, "dns", "", "resolve the cloud's names (serve's --sink and --server) with this DNS server (IP:PORT, over UDP) instead of the system's")
	root.PersistentFlags().BoolVar(&g.dnsStale, "dns-stale", true, "when a lookup of the cloud's name fails or takes over 2 s, dial the addresses it last resolved to (false: fail the dial, for comparison)")
	root.AddCommand(newServeCmd(g), newGateCmd(g), newSpeedServerCmd(g), newSpeedTestCmd(g), newContentCmd(g), newSinkCmd(g), newWorkloadCmd(g), newBufferCmd(g), newAgentCmd(g), &cobra.Command{
		Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "edgeguard", version) },
	})
	return root
}
