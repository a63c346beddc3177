package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/spf13/cobra"
)

func newGateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gate", Short: "Wait on or check the speed gate (init containers, exec probes)"}
	cmd.AddCommand(newGateWaitCmd(g), newGateCheckCmd(g))
	return cmd
}

func newGateWaitCmd(g *globals) *cobra.Command {
	var gf gateFlags
	var from string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Block until the gate is open (for init containers)",
		Long: `wait blocks until the link is good enough, then exits 0.

With --from it follows a running 'edgeguard serve'; otherwise it measures the
link itself with the same flags as serve.

Exit codes: 0 open; 1 bad flags or error; 2 not open within --timeout;
130 interrupted.`,
		Example: `  edgeguard gate wait --server http://100.64.0.1:8080 --min-download 5mbit --timeout 10m
  edgeguard gate wait --from http://127.0.0.1:8474 --timeout 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout < 0 {
				return fmt.Errorf("--timeout %s is negative (0 waits forever)", timeout)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var wait func(context.Context) error
			var status func() wire.GateStatus
			if from != "" {
				for _, n := range gateFlagNames {
					if cmd.Flags().Changed(n) {
						return fmt.Errorf("--%s has no effect with --from (the served gate has its own settings): give either --from or the gate flags, not both", n)
					}
				}
				r, err := gate.NewRemote(from)
				if err != nil {
					return fmt.Errorf("--from: %w", err)
				}
				go r.Run(ctx)
				wait, status = r.Wait, r.Status
			} else {
				gt, ev, err := gf.open(g)
				if err != nil {
					return err
				}
				defer ev.Close()
				go func() { _ = gt.Run(ctx) }()
				wait, status = gt.Wait, gt.Status
			}
			start := time.Now()
			err := wait(ctx)
			s := status()
			switch {
			case err == nil:
				g.log.Info("gate open", "after", time.Since(start).Round(time.Millisecond), "reason", s.Reason)
				fmt.Fprintf(cmd.OutOrStdout(), "gate open after %s: %s\n", time.Since(start).Round(time.Millisecond), s.Reason)
				return nil
			case cmd.Context().Err() != nil:
				return exitCode{exitInterrupted, "interrupted while the gate was " + string(s.State)}
			default:
				return exitCode{exitNotOpen, fmt.Sprintf("gate still %s after %s: %s", s.State, timeout, s.Reason)}
			}
		},
	}
	gf.register(cmd.Flags())
	cmd.Flags().StringVar(&from, "from", "", "follow a running edgeguard serve at this URL (e.g. http://127.0.0.1:8474) instead of measuring")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up (exit 2) after this long; 0 waits forever")
	return cmd
}

func newGateCheckCmd(g *globals) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Exit 0 only if the gate of a running edgeguard serve is open (for exec probes)",
		Long: `check asks a running 'edgeguard serve' for the gate's state and prints it.

Exit codes: 0 open; 2 closed or unknown; 3 edgeguard serve unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := gate.ParseServer(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/gate", nil)
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			if err != nil {
				return exitCode{exitUnreachable, fmt.Sprintf("cannot reach edgeguard serve at %s: %v", base, err)}
			}
			defer resp.Body.Close()
			var s wire.GateStatus
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
				return exitCode{exitUnreachable, fmt.Sprintf("%s/v1/gate answered %s, not a gate status (%v)", base, resp.Status, err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gate %s: %s\n", s.State, s.Reason)
			if !s.Open {
				return exitCode{exitNotOpen, ""}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "http://127.0.0.1:8474", "edgeguard serve's address")
	return cmd
}
