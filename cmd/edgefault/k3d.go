package main

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/clusters/k3d"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/ledger"
	"github.com/spf13/cobra"
)

func newK3dCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "k3d",
		Short: "k3s clusters in Docker through the k3d CLI, where it is installed",
		Long: `k3d drives the k3d CLI (v5) where it is installed: edgefault cannot build k3d
or k3s (the Go module proxy refuses them), so it constructs k3d's commands,
records each cluster in the ledger before creating it ('edgefault cleanup'
removes it, with the k3d CLI or, without it, by k3d's container labels) and
writes the kubeconfig to edgefault's state, never ~/.kube/config. No provider
runs scenarios on k3d yet, and this is untested here: see docs/kind.md.`,
	}
	cmd.AddCommand(newK3dCreateCmd(g), newK3dDeleteCmd(g))
	return cmd
}

// k3dOwner is the ledger owner of a cluster made by 'edgefault k3d
// create'.
func k3dOwner(name string) string { return "k3d-" + name }

func newK3dCreateCmd(g *globals) *cobra.Command {
	var s k3d.ClusterSpec
	cmd := &cobra.Command{
		Use:   "create NAME [--agents N] [--image REF] [--network NET]",
		Short: "Create a k3d cluster and wait until its nodes are up; prints the admin kubeconfig's path",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			s.Name = args[0]
			if _, err := k3d.CreateArgs(s); err != nil {
				return err
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			cs, err := k3d.NewClusters(l, k3dOwner(s.Name), g.log)
			if err != nil {
				return err
			}
			if _, err := kind.EnsureEngine(cmd.Context(), kind.EngineOptions{Ledger: l, Log: g.log}); err != nil {
				return err
			}
			start := time.Now()
			fmt.Fprintf(cmd.ErrOrStderr(), "creating k3d cluster %s (%d agents) ...\n", s.Name, s.Agents)
			cl, err := cs.Create(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "k3d cluster %s is up in %s (%d nodes)\n", s.Name, time.Since(start).Round(100*time.Millisecond), len(cl.Nodes))
			fmt.Fprintln(cmd.OutOrStdout(), cl.Kubeconfig)
			return nil
		},
	}
	cmd.Flags().IntVar(&s.Agents, "agents", 1, "agent nodes beside the server")
	cmd.Flags().StringVar(&s.Image, "image", "", "k3s image, already in the Docker engine where no registry is reachable (default: k3d's)")
	cmd.Flags().StringVar(&s.Network, "network", "", "an existing Docker network for the nodes (default: k3d makes k3d-NAME)")
	cmd.Flags().DurationVar(&s.Timeout, "timeout", 5*time.Minute, "how long k3d waits for the nodes")
	return cmd
}

func newK3dDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a k3d cluster 'edgefault k3d create' made",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, err := ownLedger(k3dOwner(args[0]), fmt.Sprintf("edgefault made no k3d cluster %q (it deletes only its own; 'k3d cluster delete %s' deletes any)", args[0], args[0]))
			if err != nil {
				return err
			}
			// The ledger's removers work with or without the k3d CLI.
			return l.Sweep(k3dOwner(args[0]), k3d.Removers())
		},
	}
}
