package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const defaultFleet = "edgefault"

func newFleetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Bring fleets up and down, list them, run commands in them",
		Long: `A fleet is a cloud and sites with gateways and nodes, as docs/architecture.md's
model says, made by a provider (--provider). The embedded one, netns, makes
every member a network namespace on this machine, <fleet>-<name>, so
'ip netns exec <fleet>-<name> ...' works too.`,
	}
	cmd.AddCommand(newFleetUpCmd(g), newFleetDownCmd(g), newFleetListCmd(g), newFleetExecCmd(g), newFleetKubeconfigCmd(g))
	return cmd
}

func newFleetUpCmd(g *globals) *cobra.Command {
	var file, name, backend, prov string
	var controlPlanes, cloudServices, scheduling bool
	cmd := &cobra.Command{
		Use:   "up [-f TOPOLOGY.yaml] [--fleet FLEET]",
		Short: "Create a fleet from a topology (the built-in one by default)",
		Example: `  edgefault fleet up
  edgefault fleet up -f factory.yaml --fleet plant1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			topo := scenarios.Default()
			if file != "" {
				var err error
				if topo, err = scenarios.LoadFleetFile(file); err != nil {
					return err
				}
			}
			if !cmd.Flags().Changed("fleet") && topo.Metadata.Name != "" {
				name = topo.Metadata.Name
			}
			if err := clusters.ValidateFleetName(name); err != nil {
				return err
			}
			if !controlPlanes && prov == kind.ProviderName {
				return errors.New("--control-planes=false: every site on kind is a kind cluster, control plane included; the flag is for --provider netns")
			}
			if err := requireRoot(); err != nil {
				return err
			}
			if scheduling && (!controlPlanes || prov == kind.ProviderName) {
				return errors.New("--scheduling adds a controller manager and a scheduler to every site's control plane: it is for --provider netns with control planes")
			}
			p, err := newProvider(g, prov, providerOptions{backend: backend, controlPlanes: controlPlanes, scheduling: scheduling})
			if err != nil {
				if controlPlanes && !errors.Is(err, errUnknownProvider) {
					return fmt.Errorf("%w; or bring the fleet up without site clusters: --control-planes=false", err)
				}
				return err
			}
			var eg string
			var sinkTokens *harness.Cloud
			if cloudServices {
				// Fail before anything is created if the runtime is missing.
				if eg, err = harness.FindEdgeguard(); err != nil {
					return fmt.Errorf("%w; or bring the fleet up without them: --cloud-services=false", err)
				}
			}
			f, err := p.Up(cmd.Context(), name, &topo.Spec)
			if err != nil {
				return err
			}
			if cloudServices {
				c, err := harness.StartCloud(cmd.Context(), f, eg)
				if err != nil {
					return fmt.Errorf("fleet %s is up but its cloud services are not (take it down with 'edgefault fleet down --provider %s --fleet %s'): %w", name, p.Name(), name, err)
				}
				g.log.Info("cloud services up", "speedtest", c.SpeedURL, "content", c.ContentURL, "sink", c.SinkURL, "events", filepath.Dir(c.SpeedEvents))
				sinkTokens = c
			}
			if err := printMembers(cmd, []clusters.Fleet{f}); err != nil {
				return err
			}
			if sinkTokens != nil {
				// The sink takes records only with a node's own token: what
				// `edgeguard serve --buffer --sink` on that node needs.
				fmt.Fprintln(cmd.OutOrStdout(), "\nsink tokens (EDGEGUARD_SINK_TOKEN for edgeguard serve --buffer on each node; valid while the fleet is up):")
				for _, m := range f.Members() {
					if t := sinkTokens.SinkToken(m.Name); t != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "  %s  %s\n", m.Name, t)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology file (kind: Fleet); default: the built-in store/truck/factory fleet")
	cmd.Flags().StringVar(&name, "fleet", defaultFleet, "fleet name (netns: namespaces are <name>-<member>)")
	fleetAlias(cmd)
	providerFlag(cmd, &prov)
	cmd.Flags().StringVar(&backend, "backend", "auto", "shaping backend for link profiles: auto, netem or fallback")
	cmd.Flags().BoolVar(&cloudServices, "cloud-services", true, "run the speed-test server (:8080), the content server (:8081) and the sink (:8082) in the cloud (edgeguard, found next to edgefault, on PATH or at $EDGEGUARD; on an existing cluster pods on the cloud's node, at :18080-18082, until fleet down)")
	cmd.Flags().BoolVar(&controlPlanes, "control-planes", true, "give every site its own Kubernetes cluster: etcd, kube-apiserver and kwok, lean (needs edgefault setup; false: network only, for large fleets; a topology's site may also say controlPlane: none)")
	cmd.Flags().BoolVar(&scheduling, "scheduling", false, "also run kube-controller-manager and kube-scheduler in every site's control plane, so Deployments and DaemonSets you apply schedule (on kwok)")
	return cmd
}

func newFleetKubeconfigCmd(g *globals) *cobra.Command {
	var name, node, prov string
	cmd := &cobra.Command{
		Use:   "kubeconfig [--fleet FLEET] SITE [--node MEMBER]",
		Short: "Print a site's kubeconfig (admin, or a member's own identity)",
		Long: `kubeconfig prints the kubeconfig of a site's cluster. On the embedded fleet the
API serves on the site's LAN, inside the fleet, so use it from inside the site,
for example:

  sudo ip netns exec <fleet>-<gateway> kubectl --kubeconfig <(sudo edgefault fleet kubeconfig SITE) get nodes

With --node it is that member's own identity, allowed to change only its own
Node object.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newProvider(g, prov, providerOptions{})
			if err != nil {
				return err
			}
			f, err := p.Get(cmd.Context(), name)
			if err != nil {
				return err
			}
			b, err := f.Kubeconfig(args[0], node)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "fleet", defaultFleet, "fleet name")
	fleetAlias(cmd)
	cmd.Flags().StringVar(&node, "node", "", "the kubeconfig of this member's own identity")
	providerFlag(cmd, &prov)
	return cmd
}

func newFleetDownCmd(g *globals) *cobra.Command {
	var name, prov string
	cmd := &cobra.Command{
		Use:   "down [--fleet FLEET]",
		Short: "Remove a fleet: its processes, namespaces and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clusters.ValidateFleetName(name); err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := newProvider(g, prov, providerOptions{})
			if err != nil {
				return err
			}
			if err := p.Down(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fleet %s is down\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "fleet", defaultFleet, "fleet name")
	fleetAlias(cmd)
	providerFlag(cmd, &prov)
	return cmd
}

// fleetAlias accepts --name for --fleet: every command names a fleet
// with --fleet, and --name, as fleet commands once spelled it, still
// works.
func fleetAlias(cmd *cobra.Command) {
	cmd.Flags().SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "name" {
			name = "fleet"
		}
		return pflag.NormalizedName(name)
	})
}

// fleetView is a fleet as fleet list --json prints it.
type fleetView struct {
	Name     string            `json:"name"`
	Provider string            `json:"provider"`
	Members  []clusters.Member `json:"members"`
}

func newFleetListCmd(g *globals) *cobra.Command {
	var name, prov string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--fleet FLEET]",
		Short: "List fleets and their members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newProvider(g, prov, providerOptions{})
			if err != nil {
				return err
			}
			names := []string{name}
			if name == "" {
				if names, err = p.List(cmd.Context()); err != nil {
					return err
				}
			}
			var fleets []clusters.Fleet
			for _, n := range names {
				f, err := p.Get(cmd.Context(), n)
				if err != nil {
					if name != "" {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "fleet %s: %v\n", n, err)
					continue
				}
				fleets = append(fleets, f)
			}
			if ep, ok := p.(*existing.Provider); ok && !asJSON {
				// The cluster's nodes first: which member each plays.
				if err := printMapping(cmd, ep); err != nil {
					return err
				}
			}
			if asJSON {
				views := []fleetView{}
				for _, f := range fleets {
					views = append(views, fleetView{Name: f.Name(), Provider: f.Provider(), Members: f.Members()})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			}
			if len(fleets) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no fleets are up (start one with `edgefault fleet up`)")
				return nil
			}
			return printMembers(cmd, fleets)
		},
	}
	cmd.Flags().StringVar(&name, "fleet", "", "only this fleet")
	fleetAlias(cmd)
	providerFlag(cmd, &prov)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printMembers(cmd *cobra.Command, fleets []clusters.Fleet) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLEET\tPROVIDER\tSITE\tBUILDING\tNAME\tROLE\tLOCATION\tADDRESS\tSHAPING")
	for _, f := range fleets {
		sh, err := f.LinkShaper(cmd.Context())
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "fleet %s: cannot read its shaping: %v\n", f.Name(), err)
		}
		for _, m := range f.Members() {
			addr := m.Address
			if m.WANAddress != "" {
				addr += " (wan " + m.WANAddress + ")"
			}
			shaping := "-"
			if sh != nil {
				if imp, ok, err := sh.Current(m.Name); err == nil && ok {
					shaping = imp.String()
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name(), f.Provider(), dash(m.Site), dash(m.Building), m.Name, m.Role, m.Location, addr, shaping)
		}
		if sh != nil {
			sh.Close()
		}
	}
	return tw.Flush()
}

// printMapping prints an existing cluster's nodes and the members their
// labels make them.
func printMapping(cmd *cobra.Command, p *existing.Provider) error {
	mapped, err := p.Mapping(cmd.Context())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMEMBER\tROLE\tSITE\tBUILDING\tPROBLEM")
	for _, m := range mapped {
		member := m.Member
		if m.Role == "" {
			member = "(not labelled: left alone)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Node, member, dash(m.Role), dash(m.Site), dash(m.Building), dash(m.Problem))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newFleetExecCmd(g *globals) *cobra.Command {
	var name, prov string
	cmd := &cobra.Command{
		Use:   "exec [--fleet FLEET] MEMBER -- COMMAND [ARGS...]",
		Short: "Run a command on a member (netns: inside its network namespace)",
		Example: `  edgefault fleet exec store-pos -- ip route
  edgefault fleet exec cloud -- ss -tn`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := newProvider(g, prov, providerOptions{})
			if err != nil {
				return err
			}
			// Without --fleet, the fleet that has the member, as for shape.
			f, err := findTarget(cmd.Context(), p, name, args[0])
			if err != nil {
				return err
			}
			err = f.Exec(cmd.Context(), args[0], args[1:], os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return exitCode(128 + int(ws.Signal())) // as a shell reports it
				}
				return exitCode(ee.ExitCode())
			}
			return err
		},
	}
	cmd.Flags().StringVar(&name, "fleet", "", "fleet name (default: the fleet that has MEMBER)")
	fleetAlias(cmd)
	providerFlag(cmd, &prov)
	return cmd
}

// findTarget resolves a member name (or, on netns, its namespace name) in
// the given fleet or, when none is given, in whichever fleet has it (no
// name: the provider's only fleet).
func findTarget(ctx context.Context, p clusters.Provider, fleet, target string) (clusters.Fleet, error) {
	if fleet != "" {
		return p.Get(ctx, fleet)
	}
	names, err := p.List(ctx)
	if err != nil {
		return nil, err
	}
	if target == "" {
		// No member to look for: the provider's only fleet.
		if len(names) != 1 {
			return nil, fmt.Errorf("%d fleets are up on provider %s: say which with --fleet (edgefault fleet list --provider %s)", len(names), p.Name(), p.Name())
		}
		return p.Get(ctx, names[0])
	}
	var found []clusters.Fleet
	for _, n := range names {
		f, err := p.Get(ctx, n)
		if err != nil {
			continue
		}
		if _, err := f.Member(target); err == nil {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		if len(names) == 0 {
			return nil, fmt.Errorf("no fleet is up: start one with `edgefault fleet up`")
		}
		return nil, fmt.Errorf("no node or gateway %q in any fleet (%s); see `edgefault fleet list`", target, strings.Join(names, ", "))
	case 1:
		return found[0], nil
	}
	var fn []string
	for _, f := range found {
		fn = append(fn, f.Name())
	}
	return nil, fmt.Errorf("%q is in several fleets (%s): say which with --fleet", target, strings.Join(fn, ", "))
}
