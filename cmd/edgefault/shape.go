package main

import (
	"fmt"

	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

type shapeFlags struct {
	fleet, rate, delay, jitter, loss, direction, backend string
	to                                                   []string
	outage, clear                                        bool
}

// impairment validates the flags; it runs before any target is looked up.
func (f *shapeFlags) impairment() (shaper.Impairment, error) {
	var imp shaper.Impairment
	var err error
	if f.rate != "" {
		if imp.Rate, err = shaper.ParseRate(f.rate); err != nil {
			return imp, fmt.Errorf("--rate: %w", err)
		}
	}
	if f.delay != "" {
		if imp.Delay, err = shaper.ParseDuration("delay", f.delay); err != nil {
			return imp, fmt.Errorf("--delay: %w", err)
		}
	}
	if f.jitter != "" {
		if imp.Jitter, err = shaper.ParseDuration("jitter", f.jitter); err != nil {
			return imp, fmt.Errorf("--jitter: %w", err)
		}
	}
	if f.loss != "" {
		if imp.Loss, err = shaper.ParsePercent(f.loss); err != nil {
			return imp, fmt.Errorf("--loss: %w", err)
		}
	}
	if imp.Direction, err = shaper.ParseDirection(f.direction); err != nil {
		return imp, fmt.Errorf("--direction: %w", err)
	}
	if imp.Targets, err = shaper.ParseTargets(f.to); err != nil {
		return imp, fmt.Errorf("--to: %w", err)
	}
	imp.Outage = f.outage
	if err := imp.Validate(); err != nil {
		return imp, err
	}
	if f.clear && (!imp.IsZero() || len(imp.Targets) > 0) {
		return imp, fmt.Errorf("--clear removes all shaping from the target: give it alone")
	}
	if !f.clear && imp.IsZero() {
		return imp, fmt.Errorf("nothing to do: give --rate, --delay, --loss or --outage (or --clear)")
	}
	if _, err := shaper.ParseBackend(f.backend); err != nil {
		return imp, fmt.Errorf("--backend: %w", err)
	}
	return imp, nil
}

func newShapeCmd(g *globals) *cobra.Command {
	f := &shapeFlags{}
	cmd := &cobra.Command{
		Use:   "shape [--fleet FLEET] TARGET [--rate R] [--delay D] [--jitter J] [--loss P] [--outage] [--direction egress|ingress|both] [--to CIDR]... | --clear",
		Short: "Impair a gateway's uplink or a node's link, or clear it",
		Long: `shape replaces whatever edgefault had put on the target with the impairment given.

TARGET is a node or gateway name (or its namespace name). A gateway's uplink
carries its whole building or site; a node's link only that node.

Units are explicit: rates in bit, kbit, mbit, gbit (bits/s, any case) or
exactly kB/s, MB/s (bytes/s); mbps, Mb/s and kb/s are refused because tools
disagree on whether they mean bits or bytes. Delays are Go durations (200ms).`,
		Example: `  edgefault shape store-pos --rate 1mbit --delay 200ms --loss 2%
  edgefault shape factory-gw-a --outage
  edgefault shape truck-gw --rate 512kbit --to 100.64.0.1/32
  edgefault shape store-pos --clear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imp, err := f.impairment()
			if err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := provider(g, f.backend)
			if err != nil {
				return err
			}
			fl, err := findTarget(p, f.fleet, args[0])
			if err != nil {
				return err
			}
			t, err := fl.Target(args[0])
			if err != nil {
				return err
			}
			b, _ := shaper.ParseBackend(f.backend)
			sh, err := fl.Shaper(shaper.WithBackend(b))
			if err != nil {
				return err
			}
			if f.clear {
				if err := sh.Clear(cmd.Context(), t); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: shaping cleared\n", args[0])
				return nil
			}
			if err := sh.Apply(cmd.Context(), t, imp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (backend %s)\n", args[0], imp, sh.Backend())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.fleet, "fleet", "", "fleet of the target (default: the one that has it)")
	fl.StringVar(&f.rate, "rate", "", "rate cap, e.g. 5mbit, 512kbit, 2MB/s")
	fl.StringVar(&f.delay, "delay", "", "added one-way delay, e.g. 200ms")
	fl.StringVar(&f.jitter, "jitter", "", "delay varies uniformly by ± this much (never reorders)")
	fl.StringVar(&f.loss, "loss", "", "random loss, e.g. 2%")
	fl.BoolVar(&f.outage, "outage", false, "cut the link: nothing passes (TCP connections stall, not reset)")
	fl.StringVar(&f.direction, "direction", "both", "egress (what the target sends), ingress (what it receives) or both")
	fl.StringSliceVar(&f.to, "to", nil, "only impair traffic to/from these CIDRs (repeat or comma-separate)")
	fl.BoolVar(&f.clear, "clear", false, "remove all shaping from the target and restore it")
	fl.StringVar(&f.backend, "backend", "auto", "auto, netem or fallback")
	return cmd
}
