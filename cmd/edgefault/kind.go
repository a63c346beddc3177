package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/ledger"
	"github.com/spf13/cobra"
)

func newKindCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kind",
		Short: "Real kind clusters, built and run offline: the node image and the Docker engine",
	}
	cmd.AddCommand(newKindNodeImageCmd(g), newKindEngineCmd(g))
	return cmd
}

func newKindNodeImageCmd(g *globals) *cobra.Command {
	var (
		force  bool
		mirror string
	)
	cmd := &cobra.Command{
		Use:   "node-image [--force] [--mirror URL]",
		Short: "Build the kind node image offline (Debian rootfs, kind's base files, the pinned Kubernetes, preloaded images)",
		Long: fmt.Sprintf(`node-image builds a kind %s node image for Kubernetes %s without any
container registry: a Debian %s root filesystem from debootstrap, kind's own
base files from its Go module, kubelet, kubeadm, kubectl and the control
plane's images built by 'edgefault setup --kind' (run it first), preloaded
into the node's containerd store. It starts a Docker engine if none runs.

The image is tagged with a hash of everything pinned, so it is built once and
rebuilt when a pin changes. Prints its name.`, kind.KindVersion, k8sbin.KubernetesVersion, kind.DebianSuite),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			if _, err := kind.EnsureEngine(cmd.Context(), kind.EngineOptions{Ledger: l, Log: g.log}); err != nil {
				return err
			}
			start := time.Now()
			img, err := kind.BuildNodeImage(cmd.Context(), kind.NodeImageOptions{
				Cache: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Mirror: mirror, Force: force, Progress: cmd.ErrOrStderr(),
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.ErrOrStderr(), 2, 4, 2, ' ', 0)
			for _, s := range img.Steps {
				fmt.Fprintf(tw, "  %s\t%s\n", s.Name, s.Took.Round(100*time.Millisecond))
			}
			tw.Flush()
			how := "built in " + time.Since(start).Round(time.Second).String()
			if img.Cached {
				how = "cached"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "node image %s (%s, %d MB)\n", img.Ref, how, img.Size/1e6)
			fmt.Fprintln(cmd.OutOrStdout(), img.Ref)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even a cached image and root filesystem")
	cmd.Flags().StringVar(&mirror, "mirror", "", "Debian mirror for debootstrap (default http://deb.debian.org/debian)")
	return cmd
}

func newKindEngineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "engine",
		Short: "Start or stop the Docker engine kind clusters run on",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "start",
		Short: "Use the running Docker engine, or start Debian's dockerd (with the runtime wrapper where this machine needs it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			e, err := kind.EnsureEngine(cmd.Context(), kind.EngineOptions{Ledger: l, Log: g.log})
			if err != nil {
				return err
			}
			switch {
			case e.Started:
				fmt.Fprintf(cmd.OutOrStdout(), "started dockerd (runtime wrapper: %v); 'edgefault kind engine stop' or 'edgefault cleanup' stops it\n", e.Wrapped)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "a Docker engine is running (runtime wrapper: %v)\n", e.Wrapped)
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "stop",
		Short: "Stop the dockerd edgefault started (an engine it did not start is left alone)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			return kind.StopEngine(l)
		},
	})
	return cmd
}
