package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func newAgentCmd(g *globals) *cobra.Command {
	var listen, tokenFile, namespace, uplink, kubeconfig, backend, files string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Shape this node's uplink for a harness run on a cluster it did not make (a DaemonSet)",
		Long: `agent runs on every node of an existing cluster (a DaemonSet on the host
network with NET_ADMIN) and applies or clears impairments on the node's uplink
when the harness asks: GET /v1/impairments, PUT and DELETE
/v1/impairments/uplink and /v1/impairments/pods/NAMESPACE/NAME (a pod on
this node, shaped on the host side of its veth), each with the run's token in X-Edgefault-Token (the
API server's pod proxy strips Authorization). It acts only while
the run's Lease (edgefault-run in --namespace) is being renewed and only on a
node (or pod) the run's ConfigMap (edgefault-run, keys nodes and pods) names; once the Lease is
no longer renewed it clears everything it applied. For the run's workloads
(pods on the host network) it serves their evidence (GET /v1/evidence, from
--files), removes their directory (DELETE /v1/evidence) and crashes one with
SIGKILL (POST /v1/kill/NAME: a pod of the harness's on this node).`,
		Example: `  NODE_NAME=lab-1 edgeguard agent --token-file /run/secrets/edgefault/token --namespace edgefault`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w (mount the run's Secret)", err)
			}
			var rc *rest.Config
			if kubeconfig != "" {
				rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			} else {
				rc, err = rest.InClusterConfig()
			}
			if err != nil {
				return fmt.Errorf("the cluster's API server: %w (give --kubeconfig outside a pod)", err)
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			if uplink == "" {
				if uplink, err = defaultRouteLink(); err != nil {
					return err
				}
			}
			b, err := shaper.ParseBackend(backend)
			if err != nil {
				return fmt.Errorf("--backend: %w", err)
			}
			// Probed here, not in a namespace of its own: the agent has
			// NET_ADMIN alone, no SYS_ADMIN to make one.
			caps, err := shaper.ProbeHere()
			if err != nil {
				return fmt.Errorf("what this kernel can shape: %w", err)
			}
			l, err := ledger.Open(ledger.DefaultDir())
			if err != nil {
				return err
			}
			// What an agent before this one left (the pod's state
			// outlives its container): its pods' veths among it.
			if err := shaper.RestoreAll(cmd.Context(), l, agentOwner); err != nil {
				g.log.Error("clearing what an agent before this one left", "err", err)
			}
			sh, err := shaper.New(shaper.WithBackend(b), shaper.WithCapabilities(caps), shaper.WithLogger(g.log), shaper.WithLedger(l, agentOwner))
			if err != nil {
				return err
			}
			defer sh.Close()
			a, err := agent.New(agent.Config{Node: g.node, Token: strings.TrimSpace(string(tok)), Client: cs, Namespace: namespace,
				Uplink: shaper.Link{Name: uplink}, Shaper: sh, Files: files, Log: g.log})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
				WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			g.log.Info("agent serving", "listen", ln.Addr().String(), "uplink", uplink, "namespace", namespace)
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				stop() // the agent clears what it applied before it goes
				return errors.Join(err, <-errc)
			}
			return <-errc
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", ":9443", "address to serve the API on (reached through the API server's pod proxy)")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the run's token (required)")
	fs.StringVar(&namespace, "namespace", "edgefault", "the harness's namespace: its Lease and ConfigMap edgefault-run")
	fs.StringVar(&uplink, "uplink", "", "the node's uplink interface (default: the default route's)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig outside a pod (default: in-cluster)")
	fs.StringVar(&backend, "backend", "auto", "shaping backend: auto, netem or fallback")
	fs.StringVar(&files, "files", "", "the run's directory on the node (its workloads' evidence and data), served by GET and removed by DELETE /v1/evidence")
	_ = cmd.MarkFlagRequired("token-file")
	return cmd
}

// agentOwner owns the agent's shaping in its ledger.
const agentOwner = "agent"

// defaultRouteLink is the interface of this namespace's IPv4 default
// route.
func defaultRouteLink() (string, error) {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("routes: %w", err)
	}
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask.String() == "00000000" {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", err
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errors.New("no IPv4 default route: give --uplink")
}
