package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	cmd.AddCommand(newKindNodeImageCmd(g), newKindEngineCmd(g), newKindCreateCmd(g), newKindDeleteCmd(g), newKindImageCmd(g))
	return cmd
}

// kindOwner is the ledger owner of a cluster made by 'edgefault kind
// create'.
func kindOwner(name string) string { return "kind-" + name }

func newKindCreateCmd(g *globals) *cobra.Command {
	var (
		workers int
		image   string
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--workers N] [--image REF]",
		Short: "Create a kind cluster from the offline node image, with its pod network, and wait until it is Ready",
		Long: `create makes a kind cluster on a Docker network of its own (edgefault-NAME)
from the node image 'edgefault kind node-image' built, installs the pod
network (flannel with its host-gw backend: kindnetd cannot be fetched
offline) and waits until every node is Ready and CoreDNS runs. It is recorded
in the ledger before it is made: 'edgefault kind delete NAME' or 'edgefault
cleanup' removes it, even after a crash. Prints the admin kubeconfig's path.`,
		Args: cobra.ExactArgs(1),
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
			if image == "" {
				if image, err = kind.NodeImageRef(k8sbin.Cache{Dir: k8sbin.DefaultDir()}); err != nil {
					return err
				}
			}
			cs, err := kind.NewClusters(l, kindOwner(args[0]), g.log)
			if err != nil {
				return err
			}
			start := time.Now()
			fmt.Fprintf(cmd.ErrOrStderr(), "creating kind cluster %s (%d workers) from %s ...\n", args[0], workers, image)
			cl, err := cs.Create(cmd.Context(), kind.ClusterSpec{Name: args[0], Workers: workers, NodeImage: image})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "kind cluster %s is Ready in %s\n", args[0], time.Since(start).Round(100*time.Millisecond))
			fmt.Fprintln(cmd.OutOrStdout(), cl.Kubeconfig)
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 1, "worker nodes beside the control plane")
	cmd.Flags().StringVar(&image, "image", "", "node image (default: the one 'edgefault kind node-image' builds from the cache)")
	return cmd
}

func newKindDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a kind cluster 'edgefault kind create' made, with its network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, err := ownLedger(kindOwner(args[0]), fmt.Sprintf("edgefault made no kind cluster %q (it deletes only its own; 'kind delete cluster --name %s' deletes any)", args[0], args[0]))
			if err != nil {
				return err
			}
			cs, err := kind.NewClusters(l, kindOwner(args[0]), g.log)
			if err != nil {
				return err
			}
			if err := cs.Delete(cmd.Context(), args[0]); err != nil {
				return err
			}
			return l.Drop(kindOwner(args[0]))
		},
	}
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

// ownLedger opens the ledger and checks that owner has something in it:
// delete commands remove only what edgefault made (refusal says so).
func ownLedger(owner, refusal string) (*ledger.Ledger, error) {
	if err := ledger.ValidOwner(owner); err != nil {
		return nil, err
	}
	l, err := ledger.Open(ledger.DefaultDir())
	if err != nil {
		return nil, err
	}
	entries, err := l.Entries(owner)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New(refusal)
	}
	return l, nil
}

func newKindImageCmd(g *globals) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "image BINARY [--repo NAME]",
		Short: "Make an image of your app's static binary (FROM scratch, no registry) in the Docker engine",
		Long: `image makes a container image of one static binary, FROM scratch: the binary
at /<its name>, which is also the entrypoint, tagged NAME:<the binary's digest>,
and loads it into the Docker engine (starting one if none runs), from which a
kind fleet loads it into its nodes. No base image and no registry are needed.
Prints the image's name, for a scenario's image: field.

The binary must be static (Go: CGO_ENABLED=0 go build); it runs as an
unprivileged user of its own, with no capabilities.`,
		Example: `  CGO_ENABLED=0 go build -o /tmp/edge-agent ./examples/edge-agent
  sudo edgefault kind image /tmp/edge-agent --repo example/edge-agent`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			if repo == "" {
				repo = "edgefault-app/" + strings.ToLower(filepath.Base(args[0]))
			}
			if !imageRepoRE.MatchString(repo) {
				return fmt.Errorf("--repo %q: use lowercase letters, digits, '.', '_', '-' and '/' (e.g. example/edge-agent)", repo)
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			if _, err := kind.EnsureEngine(cmd.Context(), kind.EngineOptions{Ledger: l, Log: g.log}); err != nil {
				return err
			}
			tmp, err := os.MkdirTemp("", "edgefault-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			ref, archive, err := kind.BinaryImage(tmp, repo, args[0])
			if err != nil {
				return err
			}
			if err := kind.LoadDockerImage(cmd.Context(), archive); err != nil {
				return fmt.Errorf("load %s into the Docker engine: %w", ref, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "the image's repository name (default edgefault-app/<binary's name>)")
	return cmd
}

// imageRepoRE is what an image repository name may be here (it becomes
// an argument of docker).
var imageRepoRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
