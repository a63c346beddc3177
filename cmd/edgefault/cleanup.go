package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/k3d"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

func newCleanupCmd(g *globals) *cobra.Command {
	var fleet string
	cmd := &cobra.Command{
		Use:   "cleanup [--fleet FLEET]",
		Short: "Remove everything edgefault created (or one fleet's), even after a crash",
		Long: `cleanup reads the ledger, where edgefault records every namespace, link, qdisc,
nft table, helper process, kind cluster, Docker network and container, and
the namespace it deployed on an existing cluster, before creating it, and removes what it lists (a dockerd it started is stopped last).
Links it shaped outside a fleet are first restored as they were (a peer taken
down for an outage comes back up); then helper processes are stopped (by PID
and start time, never by name) and the rest is removed: namespaces, and the
qdiscs, ifb devices and nft tables outside them. It touches nothing it did
not record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			// What cleanup removes is recorded by the embedded fleet's
			// ledger; kind's clusters, networks and containers are in it
			// too, and k3d's clusters.
			removers := kind.Removers()
			maps.Copy(removers, k3d.Removers())
			maps.Copy(removers, existing.Removers())
			p, err := netnsProvider(g, providerOptions{removers: removers})
			if err != nil {
				return err
			}
			owners := []string{fleet}
			if fleet == "" {
				if owners, err = p.Ledger().Owners(); err != nil {
					return err
				}
				// Fleets whose ledger is gone but whose state remains.
				names, _ := p.List(cmd.Context())
				seen := map[string]bool{}
				for _, o := range owners {
					seen[o] = true
				}
				for _, n := range names {
					if !seen[n] {
						owners = append(owners, n)
					}
				}
			} else if err := ledger.ValidOwner(fleet); err != nil {
				// Any owner: a fleet, or kind-NAME / k3d-NAME for a
				// cluster 'edgefault kind|k3d create' made.
				return fmt.Errorf("--fleet: %w", err)
			}
			// A dockerd edgefault started goes last: the clusters and
			// containers above are removed through it.
			engine := false
			owners = slices.DeleteFunc(owners, func(o string) bool {
				if o == kind.EngineOwner {
					engine = true
				}
				return o == kind.EngineOwner
			})
			var errs []error
			for _, o := range owners {
				if err := shaper.RestoreAll(cmd.Context(), p.Ledger(), o); err != nil {
					errs = append(errs, err)
				}
				if err := p.Sweep(o); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", o, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "cleaned up %s\n", o)
			}
			if engine {
				if err := kind.StopEngine(p.Ledger()); err != nil {
					errs = append(errs, fmt.Errorf("dockerd: %w", err))
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "stopped the dockerd edgefault started")
				}
			}
			if len(owners) == 0 && !engine {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to clean up")
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&fleet, "fleet", "", "only this fleet (default: everything edgefault created)")
	fleetAlias(cmd)
	return cmd
}
