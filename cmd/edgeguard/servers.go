package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/content"
	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/speedserver"
	"github.com/edgefault/edgefault/runtime/workload"
	"github.com/edgefault/edgefault/units"
	"github.com/spf13/cobra"
)

func newSpeedServerCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "speedserver",
		Short: "Serve Ookla-compatible speed-test endpoints (for the gate, tests, air-gapped sites)",
		Long: `speedserver answers the endpoints speedtest-go and the gate's probes use:
GET /speedtest/latency.txt, GET /speedtest/random{N}x{N}.jpg (Range honoured),
POST /speedtest/upload.php, and GET /stats (bytes served).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ev := g.openEvents("speedserver")
			defer ev.Close()
			return runHTTP(cmd.Context(), g, listen, unixSocket{}, speedserver.New(ev), nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to serve on")
	return cmd
}

func newContentCmd(g *globals) *cobra.Command {
	var listen, size string
	cmd := &cobra.Command{
		Use:   "content",
		Short: "Serve the pages the sample workload fetches (GET /page), logging each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := units.ParseSize("--page-size", size)
			if err != nil {
				return err
			}
			ev := g.openEvents("content")
			defer ev.Close()
			return runHTTP(cmd.Context(), g, listen, unixSocket{}, content.New(n, ev), nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8081", "address to serve on")
	cmd.Flags().StringVar(&size, "page-size", "256kB", "size of a page")
	return cmd
}

func newWorkloadCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "workload", Short: "Sample edge workloads"}
	var gateURL, contentURL string
	var fetchTimeout time.Duration
	var period = new(string)
	fetch := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch a page from the content server every period while the gate is open",
		Long: `fetch is the talk's speed-limited workload: it asks the gate (a running
edgeguard serve, --gate) and fetches --content every --period while the gate
is open; when the gate closes it cancels a transfer in flight and waits.
Its fetches are reported to the gate as free link measurements.`,
		Example: `  edgeguard workload fetch --gate http://127.0.0.1:8474 --content http://100.64.0.1:8081/page --period 5s`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := units.ParseDuration("--period", *period)
			if err != nil {
				return err
			}
			if p == 0 {
				return fmt.Errorf("--period must be more than 0")
			}
			if _, err := gate.ParseServer(contentURL); err != nil || contentURL == "" {
				return fmt.Errorf("--content %q is not an http(s) URL: write e.g. http://100.64.0.1:8081/page", contentURL)
			}
			ev := g.openEvents("workload")
			defer ev.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var link workload.Link = workload.NoGate{}
			if gateURL == "none" {
				g.log.Warn("--gate none: fetching whatever the link does, as an app without the runtime would")
				ev.Emit("gate-bypassed")
			} else {
				r, err := gate.NewRemote(gateURL)
				if err != nil {
					return fmt.Errorf("--gate: %w", err)
				}
				go r.Run(ctx)
				link = r
			}
			return workload.Fetch{URL: contentURL, Period: p, Node: g.node, Link: link, Events: ev, Logger: g.log, Timeout: fetchTimeout}.Run(ctx)
		},
	}
	fetch.Flags().StringVar(&gateURL, "gate", "http://127.0.0.1:8474", "edgeguard serve's address; none ignores the gate (for comparison: what an app without the runtime does)")
	fetch.Flags().StringVar(&contentURL, "content", "", "the page to fetch (edgeguard content)")
	fetch.Flags().StringVar(period, "period", "5s", "time between fetches")
	fetch.Flags().DurationVar(&fetchTimeout, "timeout", 30*time.Second, "give up a fetch after this long (a link that died mid-transfer) and try again")
	var to, stream, pperiod string
	var size, count int
	produce := &cobra.Command{
		Use:   "produce",
		Short: "Append a record to a stream of edgeguard serve's buffer every period, logging each acknowledgement",
		Example: `  edgeguard workload produce --to http://127.0.0.1:8474 --stream pos --period 100ms --events produced.jsonl
  edgeguard workload produce --to unix:///run/edgeguard/edgeguard.sock --stream pos   # from another pod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := units.ParseDuration("--period", pperiod)
			if err != nil {
				return err
			}
			if p == 0 || size <= 0 || count < 0 {
				return fmt.Errorf("--period and --size must be more than 0, --count not negative")
			}
			base, err := recordsTarget(to, true)
			if err != nil {
				return err
			}
			ev := g.openEvents("producer")
			defer ev.Close()
			return workload.Produce{URL: base, Stream: stream, Period: p, Size: size, Count: count, Events: ev, Logger: g.log}.Run(cmd.Context())
		},
	}
	produce.Flags().StringVar(&to, "to", "http://127.0.0.1:8474", "edgeguard serve (with --buffer): http://HOST:PORT, or its records socket as unix:///run/edgeguard/edgeguard.sock")
	produce.Flags().StringVar(&stream, "stream", "records", "stream name")
	produce.Flags().StringVar(&pperiod, "period", "100ms", "time between records")
	produce.Flags().IntVar(&size, "size", 256, "payload bytes")
	produce.Flags().IntVar(&count, "count", 0, "stop after this many acknowledged records (0: never)")
	var plisten, pto, pstream string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Answer payments on the LAN, recording each sale in the local buffer first (a store's point of sale)",
		Long: `serve is the retail store's local service: POST /pay records a sale in
edgeguard serve's durable buffer (--to) and answers its receipt; the buffer
forwards sales to the cloud when the uplink allows. It keeps answering
through an uplink outage; a sale the buffer cannot take is refused (503).`,
		Example: `  edgeguard workload serve --listen :9090 --to http://127.0.0.1:8474 --stream sales`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := recordsTarget(pto, false)
			if err != nil {
				return err
			}
			ev := g.openEvents("pos")
			defer ev.Close()
			return workload.Serve{Listen: plisten, To: base, Stream: pstream, Events: ev, Logger: g.log}.Run(cmd.Context())
		},
	}
	serve.Flags().StringVar(&plisten, "listen", ":9090", "address to answer payments on")
	serve.Flags().StringVar(&pto, "to", "http://127.0.0.1:8474", "edgeguard serve (with --buffer)")
	serve.Flags().StringVar(&pstream, "stream", "sales", "stream name")
	cmd.AddCommand(fetch, produce, serve)
	return cmd
}

// recordsTarget checks --to, where a workload appends records: edgeguard
// serve's http(s) address, or (unix) its records socket.
func recordsTarget(to string, unix bool) (string, error) {
	if path, ok := strings.CutPrefix(to, "unix://"); ok && unix {
		if !filepath.IsAbs(path) {
			return "", fmt.Errorf("--to %q: a socket is unix:// and an absolute path, e.g. unix:///run/edgeguard/edgeguard.sock", to)
		}
		return to, nil
	}
	base, err := gate.ParseServer(to)
	if err != nil {
		also := ""
		if unix {
			also = ", or its records socket as unix:///run/edgeguard/edgeguard.sock"
		}
		return "", fmt.Errorf("--to %q: want edgeguard serve's address, e.g. http://127.0.0.1:8474%s", to, also)
	}
	return base, nil
}
