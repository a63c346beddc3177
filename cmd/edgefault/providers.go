package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

// providerNames are what --provider takes in this build.
var providerNames = []string{"netns", "kind", "existing"}

// errUnknownProvider is a --provider this build does not have.
var errUnknownProvider = errors.New("unknown provider")

func unknownProvider(name string) error {
	return fmt.Errorf("--provider %q: %w; this build has %s (k3d clusters: 'edgefault k3d', see docs/kind.md)", name, errUnknownProvider, strings.Join(providerNames, ", "))
}

// providerOptions are what the commands may ask of a provider.
type providerOptions struct {
	// backend is the shaping backend: auto, netem or fallback.
	backend string
	// controlPlanes gives every site a Kubernetes cluster (the control
	// plane binaries must be cached: edgefault setup).
	controlPlanes bool
	// scheduling adds the controller manager and the scheduler to them.
	scheduling bool
	// removers remove what other providers recorded in the ledger.
	removers map[string]ledger.Remover
}

// newProvider makes the provider --provider named. It is the one place
// the CLI names a provider package.
func newProvider(g *globals, name string, o providerOptions) (clusters.Provider, error) {
	switch name {
	case "", "netns":
		p, err := netnsProvider(g, o)
		if err != nil {
			return nil, err
		}
		return p, nil
	case kind.ProviderName:
		b, err := shaper.ParseBackend(orDefault(o.backend, "auto"))
		if err != nil {
			return nil, fmt.Errorf("--backend: %w", err)
		}
		// The sites' control planes are kind's own: nothing to check.
		return kind.NewProvider(kind.WithLogger(g.log), kind.WithShaperOptions(shaper.WithBackend(b)))
	case existing.ProviderName:
		return existingProvider(g)
	}
	return nil, unknownProvider(name)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// providerInfo is what the provider named models as run and certify
// make it, without making it (which needs root).
func providerInfo(name string) (clusters.Info, error) {
	switch name {
	case "", "netns":
		return netns.Info(true), nil
	case kind.ProviderName:
		return kind.Info(), nil
	case existing.ProviderName:
		return existing.Info(), nil
	}
	return clusters.Info{}, unknownProvider(name)
}

// existingProvider plays fleets on the cluster --kubeconfig and
// --context name.
func existingProvider(g *globals) (*existing.Provider, error) {
	return existing.NewProvider(existing.WithKubeconfig(g.kubeconfig), existing.WithContext(g.kubeContext),
		existing.WithImage(g.agentImage), existing.WithLogger(g.log))
}

// netnsProvider is the embedded fleet's provider; cleanup needs it as
// such (its ledger and sweep).
func netnsProvider(g *globals, o providerOptions) (*netns.Provider, error) {
	b, err := shaper.ParseBackend(orDefault(o.backend, "auto"))
	if err != nil {
		return nil, fmt.Errorf("--backend: %w", err)
	}
	opts := []netns.Option{netns.WithLogger(g.log), netns.WithShaperOptions(shaper.WithBackend(b)), netns.WithRemovers(o.removers)}
	if o.controlPlanes {
		c := k8sbin.Cache{Dir: k8sbin.DefaultDir()}
		// Fail before anything is created if setup has not run.
		for _, comp := range k8sbin.Components() {
			if _, err := c.Lookup(comp.Name); err != nil {
				return nil, err
			}
		}
		opts = append(opts, netns.WithControlPlanes(c))
		if o.scheduling {
			opts = append(opts, netns.WithScheduling())
		}
	}
	return netns.NewProvider(opts...)
}

// providerFlag registers --provider.
func providerFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "provider", "netns", "where fleets run: netns (network namespaces on this machine), kind (a kind cluster per site: edgefault setup --kind and edgefault kind node-image first) or existing (a cluster you run, its nodes labelled: --kubeconfig, docs/existing-clusters.md)")
}
