// Command edgefault is the chaos harness: it brings up fleets, shapes their
// links the way edge networks fail, and checks that edge software copes.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	// A delayer helper is a copy of this binary; run it if that is us.
	shaper.RunHelperIfInvoked()
	// So is the Docker runtime wrapper a started engine uses.
	kind.RunRuntimeWrapperIfInvoked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "edgefault:", err)
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// exitCode is an error that carries the exit status to use.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

type globals struct {
	stateDir string
	verbose  bool
	log      *slog.Logger
	// The cluster --provider existing plays fleets on.
	kubeconfig, kubeContext, agentImage string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "edgefault",
		Short: "Chaos harness for Kubernetes edge fleets",
		Long: `edgefault brings up fleets of edge sites, shapes their links the way vehicles,
stores and factories lose connectivity, and checks that edge software copes.

It needs root: it creates network namespaces and changes qdiscs. Everything it
creates is recorded, and 'edgefault cleanup' removes it, even after a crash.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.stateDir != "" {
				os.Setenv("EDGEFAULT_STATE_DIR", g.stateDir)
			}
			lvl := slog.LevelInfo
			if g.verbose {
				lvl = slog.LevelDebug
			}
			g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			slog.SetDefault(g.log)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "where the ledger and state live (default /run/edgefault, or $EDGEFAULT_STATE_DIR)")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "debug logging")
	root.PersistentFlags().StringVar(&g.kubeconfig, "kubeconfig", "", "with --provider existing: the cluster's kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
	root.PersistentFlags().StringVar(&g.kubeContext, "context", "", "with --provider existing: the kubeconfig's context (default: its current one)")
	root.PersistentFlags().StringVar(&g.agentImage, "agent-image", "", "with --provider existing: the runtime's image, already on the nodes (the node agent runs in it)")
	root.AddCommand(newDoctorCmd(g), newSetupCmd(g), newFleetCmd(g), newShapeCmd(g), newCleanupCmd(g), newDemoCmd(g), newRunCmd(g), newCertifyCmd(g), newScenarioCmd(), newTraceCmd(), newKindCmd(g), newK3dCmd(g), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "edgefault", version)
			return nil
		},
	}
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return shaper.ErrNotRoot
	}
	return nil
}
