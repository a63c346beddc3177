package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// failoverFlags configure serve's failover.
type failoverFlags struct {
	primary, alternate, actions, kubeconfig string
	targets                                 []string
	interval, holdDown                      time.Duration
}

func (f *failoverFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.primary, "failover-primary", "", "enable failover: the primary gateway's address (the node's own gateway; on a gateway, its WAN next hop), or auto for the default route's gateway at start")
	fs.StringVar(&f.alternate, "failover-alternate", "", "the alternate gateway's address (another building's); none: degraded on loss, routes untouched")
	fs.StringSliceVar(&f.targets, "failover-target", nil, "host:port to probe through the primary (default: --server's)")
	fs.DurationVar(&f.interval, "failover-interval", 500*time.Millisecond, "time between probes (loss after 3 failures among 4)")
	fs.DurationVar(&f.holdDown, "failover-hold-down", 10*time.Second, "how long the primary must stay healthy before failing back")
	fs.StringVar(&f.actions, "failover-actions", "", "what to do to this node's Node while the uplink is lost: any of label,taint,cordon,drain")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "the site cluster's kubeconfig, with this node's own identity (default: the pod's ServiceAccount)")
}

func (f *failoverFlags) open(g *globals, server string) (*failover.Failover, error) {
	cfg := failover.Config{Targets: f.targets, Interval: f.interval, HoldDown: f.holdDown, Node: g.node, Events: g.openEvents("failover"), Logger: g.log}
	var err error
	if f.primary == "auto" {
		// The gateway of the default route as it is at start: the node's
		// own gateway, before failover ever moves it.
		if cfg.Primary, err = failover.DefaultGateway(); err != nil {
			return nil, fmt.Errorf("--failover-primary auto: %w", err)
		}
	} else if cfg.Primary, err = netip.ParseAddr(f.primary); err != nil {
		return nil, fmt.Errorf("--failover-primary %q is not an IP address (or auto)", f.primary)
	}
	if f.alternate != "" {
		if cfg.Alternate, err = netip.ParseAddr(f.alternate); err != nil {
			return nil, fmt.Errorf("--failover-alternate %q is not an IP address", f.alternate)
		}
	}
	if len(cfg.Targets) == 0 {
		if server == "" || server == "auto" {
			return nil, fmt.Errorf("give --failover-target host:port (the cloud service to probe)")
		}
		u := strings.TrimPrefix(strings.TrimPrefix(server, "http://"), "https://")
		u = strings.SplitN(u, "/", 2)[0]
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(u, "80")
		}
		cfg.Targets = []string{u}
	}
	if f.actions != "" {

		k := &failover.Kube{Node: g.node, Logger: g.log}
		for _, a := range strings.Split(f.actions, ",") {
			switch strings.TrimSpace(a) {
			case "label":
				k.Label = true
			case "taint":
				k.Taint = true
			case "cordon":
				k.Cordon = true
			case "drain":
				k.Drain = true
			default:
				return nil, fmt.Errorf("--failover-actions: unknown action %q: use label, taint, cordon, drain", a)
			}
		}
		// No --kubeconfig: the pod's own ServiceAccount (in a DaemonSet;
		// deploy/failover.yaml keeps it to its own Node).
		rc, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--failover-actions needs the site's API: give --kubeconfig, or run in a pod with a ServiceAccount token: %w", err)
		}
		rc.Timeout = 10 * time.Second
		if k.Client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, err
		}
		cfg.Kube = k
	}
	return failover.New(cfg)
}
