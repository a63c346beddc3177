package main

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/units"
	"github.com/spf13/cobra"
)

func newSpeedTestCmd(g *globals) *cobra.Command {
	var server, minDown string
	var duration, pause time.Duration
	var upload bool
	var count int
	cmd := &cobra.Command{
		Use:   "speedtest",
		Short: "Run full speed tests against a speed-test server and print the results",
		Long: `speedtest runs speedtest-go's full test (ping, download for --duration, and
upload with --upload) and prints the result. With --count it repeats, pausing
--pause between tests: that is the talk's method (a full test every 5 s),
kept as the baseline the gate's budgeted probing is measured against; on a
metered link it costs most of the link. Each test is an event.`,
		Example: `  edgeguard speedtest --server http://100.64.0.1:8080
  edgeguard speedtest --server http://100.64.0.1:8080 --count 0 --pause 5s --min-download 30mbit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := gate.ParseServer(server)
			if err != nil || server == "" {
				return fmt.Errorf("--server %q is not an http(s) URL: write e.g. http://100.64.0.1:8080", server)
			}
			var threshold units.Rate
			if minDown != "" {
				if threshold, err = units.ParseRate(minDown); err != nil {
					return fmt.Errorf("--min-download: %w", err)
				}
			}
			if duration <= 0 || pause < 0 || count < 0 {
				return fmt.Errorf("--duration must be positive, --pause and --count not negative")
			}
			ev := g.openEvents("speedtest")
			defer ev.Close()
			ctx := cmd.Context()
			for i := 0; count == 0 || i < count; i++ {
				if i > 0 && !sleepCtx(ctx, pause) {
					return nil
				}
				r, err := gate.SpeedTest(ctx, base, duration, upload)
				if ctx.Err() != nil {
					return nil
				}
				verdict := ""
				if threshold > 0 {
					verdict = "good"
					if err != nil || r.DownloadBps < float64(threshold) {
						verdict = "bad"
					}
				}
				if err != nil {
					ev.Emit("speedtest", "verdict", verdict, "err", err.Error(), "bytes", r.Bytes)
					if count == 1 {
						return fmt.Errorf("speed test against %s: %w", base, err)
					}
					g.log.Warn("speed test failed", "server", base, "err", err)
					continue
				}
				ev.Emit("speedtest", "verdict", verdict, "downloadBps", int64(r.DownloadBps), "uploadBps", int64(r.UploadBps), "latencyMs", float64(r.Latency.Microseconds())/1000, "bytes", r.Bytes)
				fmt.Fprintf(cmd.OutOrStdout(), "download %.2f Mbit/s  upload %.2f Mbit/s  latency %s  moved %.1f MB %s\n",
					r.DownloadBps/1e6, r.UploadBps/1e6, r.Latency.Round(time.Millisecond), float64(r.Bytes)/1e6, verdict)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "speed-test server URL (edgeguard speedserver)")
	cmd.Flags().DurationVar(&duration, "duration", 10*time.Second, "how long each direction is measured")
	cmd.Flags().BoolVar(&upload, "upload", false, "also measure upload (unreliable at low rates)")
	cmd.Flags().IntVar(&count, "count", 1, "number of tests; 0 repeats until interrupted")
	cmd.Flags().DurationVar(&pause, "pause", 5*time.Second, "pause between tests")
	cmd.Flags().StringVar(&minDown, "min-download", "", "judge each test against this rate (good/bad)")
	return cmd
}
