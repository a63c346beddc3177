package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/serve"
	"github.com/edgefault/edgefault/runtime/site"
	"github.com/spf13/cobra"
)

func newServeCmd(g *globals) *cobra.Command {
	var gf gateFlags
	var bf bufferFlags
	var ff failoverFlags
	var listen, socket, socketMode string
	var socketGroup int
	var sf siteFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the speed gate and serve its status, readiness and metrics",
		Long: `serve measures the link against a speed-test server and serves:

  /healthz          the process is alive (use it for liveness, never the gate)
  /readyz           200 while the gate is open, 503 otherwise (startup and readiness probes)
  /v1/gate          JSON status: state, last measurements, bytes spent probing
                    (?after=SEQ long-polls for the next change)
  /v1/gate/events   server-sent events, one per state change
  /v1/gate/observe  POST {"bytes":N,"seconds":S}: workload transfers as free measurements
  /metrics          Prometheus

With --buffer and --sink it also keeps a durable store-and-forward buffer:

  /v1/records       POST records (JSON, or ?stream=NAME with a raw body), from this node
                    only (127.0.0.1 or --socket); 200 once on disk, 507 when full
                    (--overflow block) or when the disk is full
  /v1/buffer        waiting records and bytes, oldest, appended, forwarded, dropped

Nodes behind one uplink (--site, --site-peer) agree over their LAN (UDP,
port 7947): their flushes split the flush share among those flushing, and a
gate that reads its link slow while the site flushes asks the site to hold
for a moment and measures again, so a flush never closes a gate.`,
		Example: `  edgeguard serve --server http://100.64.0.1:8080 --min-download 5mbit --max-latency 300ms
  edgeguard serve --server http://100.64.0.1:8080 --min-download 5mbit \
    --buffer /var/lib/edgeguard/buffer.db --sink http://100.64.0.1:8082
  edgeguard serve ... --site store-17 --site-peer 10.17.0.11:7947 --site-peer 10.17.0.12:7947`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bf.path == "" && bf.sink != "" {
				return fmt.Errorf("--sink needs --buffer: the file records wait in before they are forwarded")
			}
			var jobs []func(context.Context) error
			var coord *site.Coordinator
			if bf.path != "" {
				// Even alone, the gate tells this node's own flush from
				// a slow link.
				var sev *events.Log
				var err error
				if coord, sev, err = sf.open(g); err != nil {
					return err
				}
				defer sev.Close()
				gf.site = coord
				jobs = append(jobs, coord.Run)
			} else if sf.set() {
				return fmt.Errorf("--site and --site-peer need --buffer: they pace the buffer's flush with the site's")
			}
			gt, ev, err := gf.open(g)
			if err != nil {
				return err
			}
			defer ev.Close()
			var opts []serve.Option
			jobs = append([]func(context.Context) error{gt.Run}, jobs...)
			if ff.primary != "" {
				fo, err := ff.open(g, gf.server)
				if err != nil {
					return err
				}
				opts = append(opts, serve.WithFailover(fo))
				jobs = append(jobs, fo.Run)
			} else if ff.actions != "" || ff.alternate != "" {
				return fmt.Errorf("--failover-alternate and --failover-actions need --failover-primary")
			}
			if bf.path != "" {
				buf, fwd, err := bf.open(g)
				if err != nil {
					return err
				}
				defer buf.Close()
				opts = append(opts, serve.WithBuffer(buf))
				fwd.Link, fwd.Site = gt, coord
				jobs = append(jobs, func(ctx context.Context) error { return buf.Forward(ctx, fwd) },
					// A failed buffer ends the process: its supervisor (the
					// kubelet) restarts it and the buffer is reopened from
					// what the disk holds.
					func(ctx context.Context) error {
						select {
						case <-ctx.Done():
							return nil
						case <-buf.Failed():
							return buf.Err()
						}
					})
			}
			mode, err := parseSocketMode(socketMode)
			if err != nil {
				return err
			}
			if mode&0o002 != 0 {
				g.log.Warn("--socket-mode lets every local user append records", "mode", fmt.Sprintf("%#o", mode))
			}
			return runHTTP(cmd.Context(), g, listen, unixSocket{path: socket, mode: mode, gid: socketGroup}, serve.Handler(gt, opts...), together(jobs...))
		},
	}
	gf.register(cmd.Flags())
	bf.register(cmd.Flags())
	ff.register(cmd.Flags())
	sf.register(cmd.Flags())
	cmd.Flags().StringVar(&listen, "listen", ":8474", "address to serve on")
	cmd.Flags().StringVar(&socket, "socket", "", "also serve on this Unix socket (for local producers, also in other pods through a shared hostPath directory)")
	cmd.Flags().StringVar(&socketMode, "socket-mode", "0660", "permission bits of --socket: connecting takes write permission, so 0660 lets its owner and group in")
	cmd.Flags().IntVar(&socketGroup, "socket-group", -1, "numeric group of --socket (the group local producers run with); -1: edgeguard's own")
	return cmd
}

// together runs jobs side by side: the first to return (or the end of
// ctx) stops the others, and the first error is reported.
func together(jobs ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errc := make(chan error, len(jobs))
		for _, j := range jobs {
			go func() { errc <- j(ctx) }()
		}
		var first error
		for i := range jobs {
			err := <-errc
			if i == 0 {
				cancel()
			}
			if first == nil {
				first = err
			}
		}
		return first
	}
}

// readTimeout bounds reading one request, its body included, on the
// node's servers: their clients are local or on the LAN. The sink reads
// batches over uplinks: sinkReadTimeout, 32 MiB at 512 kbit/s.
const (
	readTimeout     = 90 * time.Second
	sinkReadTimeout = 10 * time.Minute
)

// runHTTP serves h on addr (and on the Unix socket, if given) until ctx
// ends, running bg beside it.
func runHTTP(ctx context.Context, g *globals, addr string, socket unixSocket, h http.Handler, bg func(context.Context) error) error {
	return runHTTPTLS(ctx, g, addr, socket, nil, readTimeout, h, bg)
}

// unixSocket is where and how serve listens for local producers: a
// socket file whose mode and group say which local users may connect
// (connecting takes write permission on it).
type unixSocket struct {
	path string
	mode os.FileMode // default 0660
	gid  int         // -1: the process's own group
}

// parseSocketMode reads --socket-mode: octal permission bits, never
// writable by every local user unless said so explicitly.
func parseSocketMode(s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("--socket-mode %q: want octal permission bits such as 0660 (owner and group may connect)", s)
	}
	return os.FileMode(v), nil
}

// runHTTPTLS is runHTTP with TLS on the TCP address when tlsCfg is set.
func runHTTPTLS(ctx context.Context, g *globals, addr string, socket unixSocket, tlsCfg *tls.Config, readTimeout time.Duration, h http.Handler, bg func(context.Context) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another edgeguard running? pick another --listen)", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	var uln net.Listener
	if socket.path != "" {
		_ = os.Remove(socket.path) // a stale socket from a killed run
		// Created owner-only whatever the umask, opened up below.
		old := syscall.Umask(0o177)
		uln, err = net.Listen("unix", socket.path)
		syscall.Umask(old)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s: %w", socket.path, err)
		}
		defer os.Remove(socket.path)
		mode := socket.mode
		if mode == 0 {
			mode = 0o660
		}
		if socket.gid >= 0 {
			if err := os.Chown(socket.path, -1, socket.gid); err != nil {
				ln.Close()
				uln.Close()
				return fmt.Errorf("--socket-group %d on %s: %w", socket.gid, socket.path, err)
			}
		}
		if err := os.Chmod(socket.path, mode); err != nil {
			ln.Close()
			uln.Close()
			return fmt.Errorf("--socket-mode on %s: %w", socket.path, err)
		}
	}
	// Handlers (event streams, long polls) end with ctx, so a SIGTERM is
	// not held up by them. A request must be read within ReadTimeout (a
	// body trickled at a byte a second holds nothing for long); no
	// WriteTimeout, which would cut the gate's event streams.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, BaseContext: func(net.Listener) context.Context { return ctx }}
	if socket.path != "" {
		g.log.Info("serving", "addr", ln.Addr().String(), "socket", socket.path, "socketMode", fmt.Sprintf("%#o", socket.mode), "socketGroup", socket.gid)
	} else {
		g.log.Info("serving", "addr", ln.Addr().String())
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if uln != nil {
		go func() { errc <- srv.Serve(uln) }()
	}
	if bg != nil {
		go func() { errc <- bg(ctx) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
