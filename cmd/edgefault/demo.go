package main

import (
	"errors"
	"fmt"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		o                            harness.DemoOptions
		rate, delay, outage, backend string
		prov                         string
		ui                           uiFlags
	)
	cmd := &cobra.Command{
		Use:   "demo [--reports DIR] [--keep] | demo --ui [--listen 127.0.0.1:PORT] [SCENARIO|-f FILE]",
		Short: "Throttle a node and cut an uplink on the built-in fleet, measure, report",
		Long: `demo brings up the built-in fleet (a store, a truck, a factory), measures a store
node's link to the cloud unshaped, throttled (--rate, --delay), and through a
cut of the store's uplink (--outage) with a TCP connection open, restores it,
writes reports/demo.json and reports/demo.md and takes the fleet down. It exits
non-zero if any step misbehaves.

demo --ui is the live demo: it brings up the built-in fleet (or a scenario's
topology, runtime and workloads, its timeline not played) and serves a
dashboard on loopback: the fleet with what is in force on each link, live
charts of each node's throughput, gate and buffer, failover and its Node
marks, and controls to shape, cut and restore any link, play the scenario's
steps or its whole timeline, and reset. The URL it prints carries the
session's token. Ctrl-C restores every link, judges the session as a run and
writes its report. Docs: docs/dashboard.md.`,
		Example: `  sudo edgefault demo
  sudo edgefault demo --ui                       # the built-in fleet
  sudo edgefault demo --ui factory --time-scale 60`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ui.on {
				ui.provider, ui.backend, ui.reports = prov, backend, o.Reports
				return ui.run(cmd, g, args)
			}
			if len(args) > 0 || ui.file != "" {
				return errors.New("a scenario is for demo --ui")
			}
			var err error
			if o.Rate, err = shaper.ParseRate(rate); err != nil {
				return fmt.Errorf("--rate: %w", err)
			}
			if o.Delay, err = shaper.ParseDuration("delay", delay); err != nil {
				return fmt.Errorf("--delay: %w", err)
			}
			if o.Outage, err = shaper.ParseDuration("outage", outage); err != nil {
				return fmt.Errorf("--outage: %w", err)
			}
			if err := clusters.ValidateFleetName(o.Fleet); err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			if o.Provider, err = newProvider(g, prov, providerOptions{backend: backend}); err != nil {
				return err
			}
			o.Log = g.log
			rep, err := harness.Demo(cmd.Context(), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out)
			rep.Table(out)
			for _, f := range rep.Files {
				fmt.Fprintln(out, "report:", f)
			}
			if !rep.Pass {
				return fmt.Errorf("demo failed: see the FAIL rows above")
			}
			fmt.Fprintln(out, "demo passed")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Fleet, "fleet", "edgefault-demo", "fleet name")
	fleetAlias(cmd)
	fl.StringVar(&o.Reports, "reports", "reports", "directory for the report")
	fl.BoolVar(&o.Keep, "keep", false, "leave the fleet up afterwards")
	fl.StringVar(&rate, "rate", "5mbit", "rate the node is throttled to")
	fl.StringVar(&delay, "delay", "100ms", "delay added to the node's link (each way)")
	fl.StringVar(&outage, "outage", "10s", "how long the store's uplink is cut")
	fl.StringVar(&backend, "backend", "auto", "auto, netem or fallback")
	providerFlag(cmd, &prov)
	ui.register(cmd)
	return cmd
}
