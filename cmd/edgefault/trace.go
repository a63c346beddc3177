package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/trace"
	"github.com/spf13/cobra"
)

func newTraceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trace", Short: "List, show, check and generate link traces (a link that changes over time)",
		Long: `A trace is a CSV of time,down,up,delay,loss rows that a scenario's timeline plays
on a link (a step with trace: NAME). docs/scenarios.md has the format.`}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the built-in traces", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range scenarios.BuiltinTraces() {
				b, err := scenarios.BuiltinTrace(n)
				if err != nil {
					return err
				}
				t, err := trace.Parse(n, bytes.NewReader(b))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-10s %d rows over %v\n", n, len(t.Rows), t.Duration())
			}
			return nil
		},
	}, &cobra.Command{
		Use: "show NAME", Short: "Print a built-in trace's CSV (to copy and edit)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := scenarios.BuiltinTrace(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}, &cobra.Command{
		Use: "check FILE...", Short: "Parse trace files and say what each holds", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range args {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				if len(b) > 8<<20 {
					return fmt.Errorf("%s is larger than 8 MiB: a trace has at most %d rows", f, trace.MaxRows)
				}
				t, err := trace.Parse(f, bytes.NewReader(b))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d rows over %v)\n", f, len(t.Rows), t.Duration())
			}
			return nil
		},
	})
	var seed uint64
	var length time.Duration
	gen := &cobra.Command{
		Use: "generate lte-drive", Short: "Print a trace made from the project's sourced link figures", Args: cobra.ExactArgs(1),
		Long: `generate lte-drive prints an LTE link from a moving vehicle: cells of 40-90 s, the link at
its best halfway through a cell and at the cell edge's figures at its borders, and a fallback
to 3G at one handover in four. The same seed makes the same drive. The built-in lte-drive is
--seed 1 --length 10m.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "lte-drive" {
				return fmt.Errorf("no generator %q: the one there is is lte-drive", args[0])
			}
			if length < time.Second || length > 24*time.Hour {
				return fmt.Errorf("--length %v: give 1s to 24h", length)
			}
			_, err := io.WriteString(cmd.OutOrStdout(), trace.DriveFile(seed, length))
			return err
		},
	}
	gen.Flags().Uint64Var(&seed, "seed", 1, "what the drive's cells and fallbacks are drawn from")
	gen.Flags().DurationVar(&length, "length", 10*time.Minute, "how long the drive is (one row a second)")
	cmd.AddCommand(gen)
	return cmd
}
