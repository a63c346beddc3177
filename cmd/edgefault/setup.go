package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/spf13/cobra"
)

func newSetupCmd(g *globals) *cobra.Command {
	var (
		dir   string
		only  []string
		force bool
		kind  bool
	)
	cmd := &cobra.Command{
		Use:   "setup [--cache-dir DIR] [--only NAME]... [--kind] [--force]",
		Short: "Build the pinned control-plane binaries (etcd, kube-apiserver, ...) from the Go module proxy into a cache",
		Long: fmt.Sprintf(`setup builds etcd %s, kube-apiserver, kube-controller-manager and
kube-scheduler %s, and kwok %s from the Go module proxy into a cache
directory, verifies each by running it with --version, and records what it
built. Later runs reuse the cache; a changed pin rebuilds only what changed.
A cold build takes about 10 minutes on 2 cores and about 8 GiB of Go caches.

--kind also builds what a kind node image is made of: kubelet, kubeadm,
kubectl and kube-proxy %[2]s, coredns %[4]s and crictl %[5]s (a few minutes
more, most of it sharing the control plane's build cache).

The cache is $EDGEFAULT_CACHE_DIR, else $XDG_CACHE_HOME/edgefault, else
~/.cache/edgefault.`, k8sbin.EtcdVersion, k8sbin.KubernetesVersion, k8sbin.KwokVersion, k8sbin.CorednsVersion, k8sbin.CrictlVersion),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				dir = k8sbin.DefaultDir()
			}
			c := k8sbin.Cache{Dir: dir}
			o := k8sbin.Options{Only: only, Force: force, Progress: cmd.ErrOrStderr()}
			if kind {
				o.Groups = []string{k8sbin.GroupKind}
			}
			res, err := c.Setup(cmd.Context(), o)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "COMPONENT\tVERSION\tBUILT NOW\tPATH\tREPORTS")
			for _, r := range res {
				built := "no (cached)"
				if r.Built {
					built = "yes, " + r.Took.Round(1e9).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, built, r.Path, r.VersionOutput)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "cache-dir", "", "cache directory (default $EDGEFAULT_CACHE_DIR, $XDG_CACHE_HOME/edgefault or ~/.cache/edgefault)")
	cmd.Flags().StringSliceVar(&only, "only", nil, "build only these (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok; with --kind's: kubelet, kubeadm, kubectl, kube-proxy, coredns, crictl)")
	cmd.Flags().BoolVar(&kind, "kind", false, "also build the binaries of a kind node image")
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even what is cached")
	return cmd
}
