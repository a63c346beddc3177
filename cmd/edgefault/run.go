package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

// runFlags are what run and certify share.
type runFlags struct {
	o                                   harness.RunOptions
	backend, gateMode, buffer, failover string
	provider                            string
	settle                              string
}

func (f *runFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Uint64Var(&f.o.Seed, "seed", 0, "what the links' loss and jitter draw from, to replay a run's drops (0: the scenario's seed, or a fresh one; each run prints its own)")
	fl.Float64Var(&f.o.TimeScale, "time-scale", 0, "divide the scenarios' own durations by this (0: each scenario's own timeScale); network time is never scaled")
	fl.StringVar(&f.o.Reports, "reports", "reports", "directory for the reports (junit.xml, report.json, report.html, evidence)")
	fl.BoolVar(&f.o.Keep, "keep", false, "leave each fleet up afterwards, for debugging (take it down with edgefault fleet down --fleet ef-SCENARIO)")
	fl.StringVar(&f.backend, "backend", "auto", "shaping backend: auto, netem or fallback")
	providerFlag(cmd, &f.provider)
	fl.StringVar(&f.settle, "settle", "90s", "how long after the timeline the runtime may take to settle (gates open, buffers flushed)")
	fl.StringVar(&f.gateMode, "gate", "", "override the runtime's gate: on, or bypass (workloads ignore it)")
	fl.StringVar(&f.buffer, "buffer", "", "override the buffer's durability: disk, memory (lost on a crash) or unsynced (lost on a power loss)")
	fl.StringVar(&f.failover, "failover", "", "override failover: on or off")
	fl.IntVar(&f.o.AppUID, "app-uid", harness.DefaultAppUID, "the user ID your command workloads run as: the first one this, the next one more, and so on (each its own user, no capabilities); pick a range nobody on this machine uses")
}

// load reads the scenarios named by args: files, or built-in names.
func load(args []string) ([]*scenarios.Scenario, error) {
	var out []*scenarios.Scenario
	for _, a := range args {
		var sc *scenarios.Scenario
		var err error
		if _, serr := os.Stat(a); serr == nil || strings.ContainsAny(a, "/.") {
			sc, err = scenarios.LoadScenarioFile(a)
		} else {
			sc, err = scenarios.Builtin(a)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// apply checks the flags and applies the runtime overrides.
func (f *runFlags) apply(g *globals, scs []*scenarios.Scenario) error {
	if f.o.TimeScale != 0 && (f.o.TimeScale < 1 || math.IsInf(f.o.TimeScale, 0) || math.IsNaN(f.o.TimeScale)) {
		return fmt.Errorf("--time-scale %v: use 1 (real time) or more, or 0 for each scenario's own", f.o.TimeScale)
	}
	d, err := shaper.ParseDuration("--settle", f.settle)
	if err != nil {
		return err
	}
	f.o.Settle = d
	if _, err = shaper.ParseBackend(f.backend); err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	// The overrides: each flag's value is checked once, then applied to
	// every scenario.
	for _, o := range []struct{ flag, val, allowed string }{
		{"--gate", f.gateMode, "on bypass"},
		{"--buffer", f.buffer, "disk memory unsynced"},
		{"--failover", f.failover, "on off"},
	} {
		if o.val != "" && !slices.Contains(strings.Fields(o.allowed), o.val) {
			return fmt.Errorf("%s %q: use %s", o.flag, o.val, strings.Join(strings.Fields(o.allowed), " or "))
		}
	}
	for _, sc := range scs {
		rt := &sc.Spec.Runtime
		if f.gateMode != "" {
			rt.Gate.Mode = f.gateMode
		}
		if f.buffer != "" {
			rt.Buffer.Durability = f.buffer
		}
		if f.failover != "" {
			rt.Failover.Enabled = f.failover == "on"
		}
	}
	if err := requireRoot(); err != nil {
		return err
	}
	if f.o.Provider, err = newProvider(g, f.provider, providerOptions{backend: f.backend, controlPlanes: true}); err != nil {
		if errors.Is(err, errUnknownProvider) {
			return err
		}
		return fmt.Errorf("%w (scenarios run against each site's real control plane)", err)
	}
	f.o.Log = g.log
	return nil
}

// certify loads the scenarios named (files or built-ins), applies the
// flags and plays them.
func (f *runFlags) certify(cmd *cobra.Command, g *globals, names []string) error {
	scs, err := load(names)
	if err != nil {
		return err
	}
	if err := f.apply(g, scs); err != nil {
		return err
	}
	rep, files, err := harness.Certify(cmd.Context(), scs, f.o)
	if rep != nil {
		summary(cmd.OutOrStdout(), rep)
	}
	for _, p := range files {
		fmt.Fprintln(cmd.OutOrStdout(), "report:", p)
	}
	if err != nil {
		return err
	}
	if !rep.Pass {
		return exitCode(1)
	}
	return nil
}

// summary prints a verdict table.
func summary(w io.Writer, rep *harness.Report) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tVALIDATOR\tGROUP\tVERDICT\tWHAT WAS SEEN")
	for _, s := range rep.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t(run)\t\tERROR\t%s\n", s.Name, s.Error)
		}
		for _, v := range s.Verdicts {
			verdict := "pass"
			if !v.Pass {
				verdict = "FAIL"
			}
			// A row per line (mostly per node), each cut to fit.
			lines := v.Lines
			if len(lines) == 0 {
				lines = []string{v.Summary}
			}
			for i, l := range lines {
				if len(l) > 160 {
					l = l[:157] + "..."
				}
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, v.Validator, v.Group, verdict, l)
				} else {
					fmt.Fprintf(tw, "\t\t\t\t%s\n", l)
				}
			}
		}
	}
	tw.Flush()
	for _, s := range rep.Scenarios {
		verdict := "PASS"
		if !s.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s %s: timeline %v at time scale %g, seed %d (wall time %v, %s)\n", verdict, s.Name, s.Timeline, s.TimeScale, s.Seed, s.Duration.Round(1e8), s.Runtime)
		if r := s.Resources(); r != "" {
			fmt.Fprintf(w, "  fleet %s\n", r)
		}
	}
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "run FILE|NAME...",
		Short: "Play scenarios (files or built-in names) on the embedded fleet and judge them",
		Long: `run plays each scenario on a fresh embedded fleet with its real control planes:
fleet up, the runtime (edgeguard serve) on every node, the workloads, the
timeline of impairments and faults (scaled by --time-scale), a settle time,
the validators, the reports (JUnit XML, JSON, HTML) and the fleet down.
It exits 1 if any expectation failed.

Built-in scenarios: ` + strings.Join(scenarios.Builtins(), ", ") + ` (edgefault scenario show NAME prints one).
The runtime overrides (--gate bypass, --buffer memory, --failover off) are
the negative controls: each makes the matching validator fail.`,
		Example: `  edgefault run vehicle
  edgefault run my-store.yaml --time-scale 120 --keep
  edgefault run factory --failover off   # expect node-tagged and routes-switched to fail`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dryRun {
				return f.dryRun(cmd, g, args)
			}
			return f.certify(cmd, g, args)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "touch nothing: list every member (with --provider existing: every node) the scenarios would impair, when and how, and what the provider would refuse (exit 1 if anything would be)")
	return cmd
}

func newCertifyCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "certify [FILE...]",
		Short: "Play every built-in scenario (or the given files) and write the certification report",
		Long: `certify plays the built-in scenarios (` + strings.Join(scenarios.Certified(), ", ") + `), or the
scenarios given (built-in names or files), one after the other, each on its own
fleet, and writes one report for all of them. It exits 1 if any expectation
failed. regional-outage, a hundred stores, is played only when named.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = scenarios.Certified()
			}
			return f.certify(cmd, g, args)
		},
	}
	f.register(cmd)
	return cmd
}

func newScenarioCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "scenario", Short: "List, show, check and start scenarios"}
	cmd.AddCommand(newScenarioInitCmd())
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the built-in scenarios", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range scenarios.Builtins() {
				sc, err := scenarios.Builtin(n)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-10s %s\n", n, sc.Metadata.Description)
			}
			return nil
		},
	}, &cobra.Command{
		Use: "show NAME", Short: "Print a built-in scenario's YAML (to copy and edit)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := scenarios.BuiltinSource(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	var checkProvider string
	var checkScale float64
	check := &cobra.Command{
		Use: "check FILE...", Short: "Parse and validate scenario files, and check the provider can model them, without running them", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scs, err := load(args)
			if err != nil {
				return err
			}
			info, err := providerInfo(checkProvider)
			if err != nil {
				return err
			}
			for _, sc := range scs {
				if err := harness.Supports(info, sc); err != nil {
					return err
				}
				if err := harness.CheckTiming(sc, sc.Scale(checkScale)); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s, %d steps, %d expectations, %v at time scale %g)\n", sc.Source, sc.Metadata.Name, len(sc.Spec.Timeline), len(sc.Spec.Expect), scenarios.Scaled(sc.Spec.Duration, sc.Scale(checkScale), 0), sc.Scale(checkScale))
			}
			return nil
		},
	}
	providerFlag(check, &checkProvider)
	check.Flags().Float64Var(&checkScale, "time-scale", 0, "check at this time scale, as run --time-scale would play it (0: each scenario's own)")
	cmd.AddCommand(check)
	return cmd
}

// dryRun lists what each scenario would do, and where, without touching
// anything: on an existing cluster, which of its nodes play the members
// (from their labels) and what in the cluster's labels or the scenario
// stops it.
func (f *runFlags) dryRun(cmd *cobra.Command, g *globals, names []string) error {
	scs, err := load(names)
	if err != nil {
		return err
	}
	info, err := providerInfo(f.provider)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	var mapped []existing.Mapped
	if f.provider == existing.ProviderName {
		p, err := existingProvider(g)
		if err != nil {
			return err
		}
		if mapped, err = p.Mapping(cmd.Context()); err != nil {
			return err
		}
	}
	problems := 0
	for _, sc := range scs {
		steps, err := harness.Plan(sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.Metadata.Name, err)
		}
		fmt.Fprintf(w, "scenario %s on provider %s (dry run: nothing touched)\n", sc.Metadata.Name, info.Name)
		where := func(member string) string { return member }
		if mapped != nil {
			where = existingWhere(mapped, &sc.Spec.Topology)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tFOR\tMEMBER\tIMPAIRS\tWHAT")
		for _, st := range steps {
			hold := "-"
			if st.For > 0 {
				hold = st.For.String()
			}
			fmt.Fprintf(tw, "%v\t%s\t%s\t%s\t%s\n", st.At, hold, st.Member, where(st.Member), st.What)
		}
		tw.Flush()
		var errs []string
		if err := harness.Supports(info, sc); err != nil {
			errs = append(errs, err.Error())
		}
		if mapped != nil {
			if err := existing.Check(mapped, &sc.Spec.Topology); err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, e := range errs {
			fmt.Fprintf(w, "would refuse: %s\n", e)
		}
		problems += len(errs)
		fmt.Fprintln(w)
	}
	if problems > 0 {
		return exitCode(1)
	}
	return nil
}

// existingWhere says which of an existing cluster's nodes a member's
// impairment lands on: its own node, or for a gateway the nodes behind
// it (each node's own link is its uplink there).
func existingWhere(mapped []existing.Mapped, topo *scenarios.FleetSpec) func(string) string {
	node := map[string]string{}
	for _, m := range mapped {
		if m.Member != "" && m.Problem == "" {
			node[m.Member] = m.Node
		}
	}
	behind := existing.Gateways(topo) // a gateway: the nodes behind it
	for _, m := range topo.Members() {
		if m.Role == clusters.RoleNode {
			behind[m.Name] = []string{m.Name} // a node: itself
		}
	}
	return func(member string) string {
		members := behind[member]
		var nodes []string
		for _, m := range members {
			n, ok := node[m]
			if !ok {
				n = "(no node plays " + m + ")"
			}
			nodes = append(nodes, "node "+n)
		}
		if len(nodes) == 0 {
			return "-"
		}
		return strings.Join(nodes, ", ")
	}
}
