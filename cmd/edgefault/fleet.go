package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const defaultFleet = "edgefault"

func provider(g *globals, backend string) (*netns.Provider, error) {
	b, err := shaper.ParseBackend(backend)
	if err != nil {
		return nil, err
	}
	return netns.NewProvider(netns.WithLogger(g.log), netns.WithShaperOptions(shaper.WithBackend(b)))
}

func newFleetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Bring embedded fleets up and down, list them, run commands in them",
		Long: `An embedded fleet is a set of network namespaces on this machine: a cloud, and
sites with gateways and nodes, wired as DESIGN.md's model says. Every member is
the namespace <fleet>-<name>, so 'ip netns exec <fleet>-<name> ...' works too.`,
	}
	cmd.AddCommand(newFleetUpCmd(g), newFleetDownCmd(g), newFleetListCmd(g), newFleetExecCmd(g), newFleetKubeconfigCmd(g))
	return cmd
}

func newFleetUpCmd(g *globals) *cobra.Command {
	var file, name, backend string
	var controlPlanes, cloudServices bool
	cmd := &cobra.Command{
		Use:   "up [-f TOPOLOGY.yaml] [--name FLEET]",
		Short: "Create a fleet from a topology (the built-in one by default)",
		Example: `  edgefault fleet up
  edgefault fleet up -f factory.yaml --name plant1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			topo := scenarios.Default()
			if file != "" {
				var err error
				if topo, err = scenarios.LoadFleetFile(file); err != nil {
					return err
				}
			}
			if !cmd.Flags().Changed("name") && topo.Metadata.Name != "" {
				name = topo.Metadata.Name
			}
			if err := netns.ValidateName(name); err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := provider(g, backend)
			if err != nil {
				return err
			}
			if controlPlanes {
				c := k8sbin.Cache{Dir: k8sbin.DefaultDir()}
				// Fail before anything is created if setup has not run.
				for _, comp := range k8sbin.Components() {
					if _, err := c.Lookup(comp.Name); err != nil {
						return fmt.Errorf("%w; or bring the fleet up without site clusters: --control-planes=false", err)
					}
				}
				netns.WithControlPlanes(c)(p)
			}
			var eg string
			if cloudServices {
				// Fail before anything is created if the runtime is missing.
				if eg, err = harness.FindEdgeguard(); err != nil {
					return fmt.Errorf("%w; or bring the fleet up without them: --cloud-services=false", err)
				}
			}
			f, err := p.UpFleet(cmd.Context(), name, &topo.Spec)
			if err != nil {
				return err
			}
			if cloudServices {
				c, err := harness.StartCloud(cmd.Context(), f, eg)
				if err != nil {
					return fmt.Errorf("fleet %s is up but its cloud services are not (take it down with 'edgefault fleet down --name %s'): %w", name, name, err)
				}
				g.log.Info("cloud services up", "speedtest", c.SpeedURL, "content", c.ContentURL, "sink", c.SinkURL, "events", filepath.Dir(c.SpeedEvents))
			}
			return printMembers(cmd, []*netns.Fleet{f})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology file (kind: Fleet); default: the built-in store/truck/factory fleet")
	cmd.Flags().StringVar(&name, "name", defaultFleet, "fleet name (namespaces are <name>-<member>)")
	fleetAlias(cmd)
	cmd.Flags().StringVar(&backend, "backend", "auto", "shaping backend for link profiles: auto, netem or fallback")
	cmd.Flags().BoolVar(&cloudServices, "cloud-services", true, "run the speed-test server (:8080), the content server (:8081) and the sink (:8082) in the cloud (edgeguard, found next to edgefault, on PATH or at $EDGEGUARD)")
	cmd.Flags().BoolVar(&controlPlanes, "control-planes", true, "give every site its own Kubernetes cluster (needs edgefault setup; false: network only, for large fleets)")
	return cmd
}

func newFleetKubeconfigCmd(g *globals) *cobra.Command {
	var name, node string
	cmd := &cobra.Command{
		Use:   "kubeconfig [--name FLEET] SITE [--node MEMBER]",
		Short: "Print a site's kubeconfig (admin, or a member's own identity)",
		Long: `kubeconfig prints the kubeconfig of a site's cluster. The API serves on the
site's LAN, inside the fleet, so use it from inside the site, for example:

  sudo ip netns exec <fleet>-<gateway> kubectl --kubeconfig <(sudo edgefault fleet kubeconfig SITE) get nodes

With --node it is that member's own identity, allowed to change only its own
Node object.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := provider(g, "auto")
			if err != nil {
				return err
			}
			f, err := p.Load(name)
			if err != nil {
				return err
			}
			sc, err := f.Cluster(args[0])
			if err != nil {
				return err
			}
			path := sc.Admin
			if node != "" {
				var ok bool
				if path, ok = sc.Nodes[node]; !ok {
					return fmt.Errorf("site %s has no member %q", args[0], node)
				}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", defaultFleet, "fleet name")
	fleetAlias(cmd)
	cmd.Flags().StringVar(&node, "node", "", "the kubeconfig of this member's own identity")
	return cmd
}

func newFleetDownCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "down [--name FLEET]",
		Short: "Remove a fleet: its processes, namespaces and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := netns.ValidateName(name); err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := provider(g, "auto")
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
	cmd.Flags().StringVar(&name, "name", defaultFleet, "fleet name")
	fleetAlias(cmd)
	return cmd
}

// fleetAlias accepts --fleet for --name, as shape and cleanup spell it.
func fleetAlias(cmd *cobra.Command) {
	cmd.Flags().SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "fleet" {
			name = "name"
		}
		return pflag.NormalizedName(name)
	})
}

func newFleetListCmd(g *globals) *cobra.Command {
	var name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--name FLEET]",
		Short: "List fleets and their members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := provider(g, "auto")
			if err != nil {
				return err
			}
			names := []string{name}
			if name == "" {
				if names, err = p.List(cmd.Context()); err != nil {
					return err
				}
			}
			var fleets []*netns.Fleet
			for _, n := range names {
				f, err := p.Load(n)
				if err != nil {
					if name != "" {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "fleet %s: %v\n", n, err)
					continue
				}
				fleets = append(fleets, f)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(fleets)
			}
			if len(fleets) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no fleets are up (start one with `edgefault fleet up`)")
				return nil
			}
			return printMembers(cmd, fleets)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only this fleet")
	fleetAlias(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printMembers(cmd *cobra.Command, fleets []*netns.Fleet) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	var shapers []*shaper.Shaper
	defer func() {
		for _, s := range shapers {
			s.Close()
		}
	}()
	fmt.Fprintln(tw, "FLEET\tSITE\tBUILDING\tNAME\tROLE\tNAMESPACE\tADDRESS\tSHAPING")
	for _, f := range fleets {
		var sh *shaper.Shaper
		for _, m := range f.Members() {
			addr := m.Address
			if m.WANAddress != "" {
				addr += " (wan " + m.WANAddress + ")"
			}
			shaping := "-"
			if t, err := f.Target(m.Name); err == nil {
				if sh == nil {
					if sh, _ = f.Shaper(shaper.WithCapabilities(shaper.Capabilities{Features: allFeatures()})); sh != nil {
						shapers = append(shapers, sh)
					}
				}
				if sh != nil {
					if imp, ok, err := sh.Current(t); err == nil && ok {
						shaping = imp.String()
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name(), dash(m.Site), dash(m.Building), m.Name, m.Role, m.Namespace, addr, shaping)
		}
	}
	return tw.Flush()
}

// allFeatures lets a read-only shaper skip probing.
func allFeatures() map[string]bool {
	m := map[string]bool{}
	for _, f := range []string{shaper.FeatTBF, shaper.FeatHTB, shaper.FeatIngress, shaper.FeatIFB, shaper.FeatMirred, shaper.FeatU32, shaper.FeatNftNetdev, shaper.FeatNftNumgen, shaper.FeatNfqueue} {
		m[f] = true
	}
	return m
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newFleetExecCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "exec [--name FLEET] MEMBER -- COMMAND [ARGS...]",
		Short: "Run a command inside a member's network namespace",
		Example: `  edgefault fleet exec store-pos -- ip route
  edgefault fleet exec cloud -- ss -tn`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			p, err := provider(g, "auto")
			if err != nil {
				return err
			}
			// Without --name, the fleet that has the member, as for shape.
			f, err := findTarget(p, name, args[0])
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
	cmd.Flags().StringVar(&name, "name", "", "fleet name (default: the fleet that has MEMBER)")
	fleetAlias(cmd)
	return cmd
}

// findTarget resolves a shape target: a member name or namespace name, in
// the given fleet or, when none is given, in whichever fleet has it.
func findTarget(p *netns.Provider, fleet, target string) (*netns.Fleet, error) {
	if fleet != "" {
		return p.Load(fleet)
	}
	names, err := p.List(nil)
	if err != nil {
		return nil, err
	}
	var found []*netns.Fleet
	for _, n := range names {
		f, err := p.Load(n)
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
