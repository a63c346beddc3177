package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// SiteCluster is a site's own Kubernetes cluster: its control plane runs
// in the site's first gateway namespace and serves on the gateway's LAN
// address, so the site's nodes reach it over the site LAN and a cut
// uplink leaves it working.
type SiteCluster struct {
	Site      string `json:"site"`
	Namespace string `json:"namespace"`
	URL       string `json:"url"`
	// Admin is the site's admin kubeconfig; Nodes holds one kubeconfig
	// per member, each with that member's own identity.
	Admin string            `json:"admin"`
	Nodes map[string]string `json:"nodes"`
	// Components are the processes it runs.
	Components []string `json:"components,omitempty"`
}

// startControlPlanes gives every site its control plane and registers each
// node and gateway of the site as a Node, with its own identity.
func (f *Fleet) startControlPlanes(ctx context.Context, bin k8sbin.Cache) error {
	f.Clusters = map[string]*SiteCluster{}
	// Sites come up side by side, their control planes' starts two per
	// core: an apiserver's start is mostly CPU (about 2 s of it), and
	// thirty at once on two cores would each miss its readiness bound.
	// Waiting for Nodes to go Ready takes no slot.
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  []error
		slots = make(chan struct{}, 2*runtime.NumCPU())
	)
	for _, s := range f.Sites {
		if s.NoControlPlane {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc, err := f.startSite(ctx, bin, s, slots)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			f.Clusters[s.Name] = sc
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startSite starts one site's control plane and registers its members.
func (f *Fleet) startSite(ctx context.Context, bin k8sbin.Cache, s site, slots chan struct{}) (*SiteCluster, error) {
	{
		var members []member
		var host *member
		for i := range f.All {
			m := f.All[i]
			if m.Site != s.Name {
				continue
			}
			members = append(members, m)
			if host == nil && m.Role == clusters.RoleGateway {
				host = &f.All[i]
			}
		}
		start := time.Now()
		dir := filepath.Join(f.p.stateDir, f.FleetName, "sites", s.Name)
		slots <- struct{}{}
		cp, err := controlplane.Start(ctx, controlplane.Options{Site: s.Name, Dir: dir, Bin: bin, Ledger: f.p.ledger, Owner: f.FleetName,
			Log: f.p.log, Nodes: true, Workloads: f.p.scheduling, Lean: true, Netns: "/run/netns/" + host.Namespace, Address: host.Address})
		<-slots
		if err != nil {
			return nil, fmt.Errorf("control plane of site %s: %w", s.Name, err)
		}
		sc := &SiteCluster{Site: s.Name, Namespace: host.Namespace, URL: cp.URL, Admin: filepath.Join(dir, "admin.kubeconfig"), Nodes: map[string]string{}, Components: cp.Components()}
		cs, err := cp.Client()
		if err != nil {
			return nil, err
		}
		kdir := filepath.Join(dir, "kubeconfigs")
		if err := os.MkdirAll(kdir, 0o700); err != nil {
			return nil, err
		}
		for _, m := range members {
			if err := registerNode(ctx, cs, m); err != nil {
				return nil, err
			}
			if err := cp.GrantNode(ctx, m.Name); err != nil {
				return nil, err
			}
			cfg, err := cp.NodeConfig(m.Name)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(kdir, m.Name+".kubeconfig")
			if err := writeKubeconfig(path, s.Name, m.Name, cfg.Host, cfg.CAFile, cfg.CertFile, cfg.KeyFile); err != nil {
				return nil, err
			}
			sc.Nodes[m.Name] = path
		}
		if err := waitNodesReady(ctx, cs, len(members), 90*time.Second, f.p.scheduling); err != nil {
			// The directory goes with the failed fleet: quote kwok.
			return nil, fmt.Errorf("site %s: %w; kwok's log ends: %s", s.Name, err, cp.LogTail("kwok"))
		}
		f.p.log.Info("site cluster up", "fleet", f.FleetName, "site", s.Name, "apiserver", cp.URL, "in", host.Namespace, "nodes", len(members), "elapsed", time.Since(start).Round(time.Millisecond))
		return sc, nil
	}
}

// registerNode creates m's Node object with the model's labels; kwok keeps
// it Ready.
func registerNode(ctx context.Context, cs *kubernetes.Clientset, m member) error {
	labels := map[string]string{clusters.LabelSite: m.Site, clusters.LabelRole: m.Role, "kubernetes.io/hostname": m.Name}
	if m.Building != "" {
		labels[clusters.LabelBuilding] = m.Building
	}
	if m.Gateway != "" {
		labels[clusters.LabelGateway] = m.Gateway
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Labels: labels, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: m.Address}}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", m.Name, err)
	}
	return nil
}

func writeKubeconfig(path, cluster, user, server, ca, cert, key string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = cluster
	return clientcmd.WriteToFile(*cfg, path)
}

// SiteComponents names the processes of site's control plane (none: an
// empty list).
func (f *Fleet) SiteComponents(site string) []string {
	if sc, ok := f.Clusters[site]; ok {
		return sc.Components
	}
	return nil
}

// Cluster returns the site's cluster, or an error naming the sites that
// have one.
func (f *Fleet) Cluster(site string) (*SiteCluster, error) {
	if sc, ok := f.Clusters[site]; ok {
		return sc, nil
	}
	if len(f.Clusters) == 0 {
		return nil, fmt.Errorf("fleet %q has no site clusters (bring it up with --control-planes)", f.FleetName)
	}
	var names []string
	for n := range f.Clusters {
		names = append(names, n)
	}
	return nil, fmt.Errorf("fleet %q has no site %q (sites: %v)", f.FleetName, site, names)
}

// waitNodesReady waits until n nodes report Ready (kwok's doing) and, with
// scheduling, the node lifecycle controller has lifted their not-ready
// taint, so pods schedule at once (without it, nothing lifts the taint,
// and no pod waits on it).
func waitNodesReady(ctx context.Context, cs *kubernetes.Clientset, n int, within time.Duration, scheduling bool) error {
	deadline := time.Now().Add(within)
	ready := 0
	for time.Now().Before(deadline) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			ready = 0
			for _, nd := range nodes.Items {
				tainted := false
				for _, tn := range nd.Spec.Taints {
					tainted = tainted || (scheduling && tn.Key == corev1.TaintNodeNotReady)
				}
				for _, c := range nd.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !tainted {
						ready++
					}
				}
			}
			if ready >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%d of %d nodes Ready after %v (kwok keeps them Ready)", ready, n, within)
}
