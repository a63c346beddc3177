package kind

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/edgefault/edgefault/ledger"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

// Ledger entry kinds this package records.
const (
	KindCluster = "kind-cluster"   // a kind cluster (Name)
	KindNetwork = "docker-network" // a Docker network (Name)
)

// PodSubnet is every cluster's pod network (kind's default).
const PodSubnet = "10.244.0.0/16"

// ClusterSpec is a kind cluster to create.
type ClusterSpec struct {
	// Name is the cluster's name (docker containers are Name-control-plane,
	// Name-worker, Name-worker2, ...).
	Name string
	// Workers is how many worker nodes (0: the control plane runs pods).
	Workers int
	// Labels are put on every worker Node (the control plane's too when
	// there are no workers).
	Labels map[string]string
	// NodeImage is the node image (BuildNodeImage).
	NodeImage string
	// Nodes, when given, are the workers one by one (Workers and Labels
	// are then ignored): each Node object is named as given, so a fleet's
	// members keep their names in the API.
	Nodes []NodeSpec
	// Mounts are directories of this machine mounted into every node at
	// the same path.
	Mounts []string
}

// NodeSpec is one worker.
type NodeSpec struct {
	// Name is its Node object's name (a DNS label).
	Name   string
	Labels map[string]string
}

// Cluster is a kind cluster that is up.
type Cluster struct {
	Name string
	// Network is its Docker network.
	Network string
	// Kubeconfig is the admin kubeconfig's path on this machine.
	Kubeconfig string
	// Nodes are its node containers, the control plane first.
	Nodes []Node
}

// Node is one node container.
type Node struct {
	// Name is the container's name.
	Name string
	// NodeName is its Node object's name (the container's unless
	// ClusterSpec.Nodes named it).
	NodeName string
	Role     string
	// Address is its address on the cluster's Docker network.
	Address netip.Addr
	// PodCIDR is the pod range the control plane gave it.
	PodCIDR netip.Prefix
}

// Clusters creates and deletes kind clusters through kind's library,
// recording each in the ledger first.
type Clusters struct {
	ledger *ledger.Ledger
	owner  string
	log    *slog.Logger
	kind   *kindcluster.Provider
	dir    string
}

// NewClusters returns a Clusters that records what it creates under owner
// in l, and keeps kubeconfigs under l's state directory.
func NewClusters(l *ledger.Ledger, owner string, log *slog.Logger) (*Clusters, error) {
	if err := ledger.ValidOwner(owner); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(filepath.Dir(l.Dir()), "kind", owner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Clusters{
		ledger: l, owner: owner, log: log, dir: dir,
		kind: kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{log})),
	}, nil
}

var (
	clusterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	nodeNameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	mountRE       = regexp.MustCompile(`^/[A-Za-z0-9_./-]+$`)
)

// networkEnv is how kind's library is told which Docker network to use;
// it reads the environment, so creations are serialised.
const networkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

var createMu sync.Mutex

// ErrNameTaken is returned (wrapped) when a cluster of that name exists.
var ErrNameTaken = errors.New("kind cluster name taken")

// Create makes the cluster on a Docker network of its own, installs
// flannel and waits until every node is Ready. A Create that fails removes
// what it made.
func (c *Clusters) Create(ctx context.Context, s ClusterSpec) (_ *Cluster, err error) {
	if !clusterNameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("kind cluster name %q: use 1-40 lower-case letters, digits and '-'", s.Name)
	}
	if s.NodeImage == "" {
		return nil, errors.New("no node image: run 'edgefault kind node-image'")
	}
	if _, err := imageSize(ctx, s.NodeImage); err != nil {
		return nil, fmt.Errorf("node image %s is not in the Docker engine: run 'edgefault kind node-image' (%w)", s.NodeImage, err)
	}
	existing, err := c.kind.List()
	if err != nil {
		return nil, fmt.Errorf("list kind clusters (is the Docker engine running? 'edgefault kind engine start'): %w", err)
	}
	for _, n := range existing {
		if n == s.Name {
			return nil, fmt.Errorf("%w: %q already exists; delete it ('edgefault cleanup' if edgefault made it, else 'kind delete cluster --name %s') or choose another name", ErrNameTaken, s.Name, s.Name)
		}
	}
	cfg, err := clusterConfig(s)
	if err != nil {
		return nil, err
	}
	if err := raiseInotify(filepath.Dir(c.ledger.Dir()), c.log); err != nil {
		return nil, err
	}
	network := "edgefault-" + s.Name
	if err := c.ledger.Record(c.owner, ledger.Entry{Kind: KindNetwork, Name: network, Time: time.Now()}, ledger.Entry{Kind: KindCluster, Name: s.Name, Time: time.Now()}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := c.Delete(context.WithoutCancel(ctx), s.Name); derr != nil {
				err = errors.Join(err, fmt.Errorf("removing what was made: %w", derr))
			}
		}
	}()
	kubeconfig := filepath.Join(c.dir, s.Name+".kubeconfig")
	start := time.Now()
	createMu.Lock()
	old, had := os.LookupEnv(networkEnv)
	os.Setenv(networkEnv, network)
	err = c.kind.Create(s.Name, kindcluster.CreateWithRawConfig(cfg), kindcluster.CreateWithNodeImage(s.NodeImage),
		kindcluster.CreateWithKubeconfigPath(kubeconfig), kindcluster.CreateWithDisplayUsage(false), kindcluster.CreateWithDisplaySalutation(false))
	if had {
		os.Setenv(networkEnv, old)
	} else {
		os.Unsetenv(networkEnv)
	}
	createMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("kind create cluster %s: %w", s.Name, err)
	}
	c.log.Info("kind cluster created", "cluster", s.Name, "took", time.Since(start).Round(100*time.Millisecond))
	cl := &Cluster{Name: s.Name, Network: network, Kubeconfig: kubeconfig}
	if err := c.network(ctx, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

// Get returns a cluster this Clusters made that is up.
func (c *Clusters) Get(ctx context.Context, name string) (*Cluster, error) {
	cl := &Cluster{Name: name, Network: "edgefault-" + name, Kubeconfig: filepath.Join(c.dir, name+".kubeconfig")}
	if _, err := os.Stat(cl.Kubeconfig); err != nil {
		return nil, fmt.Errorf("kind cluster %s: not made by this owner (%s): %w", name, c.owner, err)
	}
	return cl, c.describe(ctx, cl)
}

// Delete removes the cluster, the cloud's containers on its network, the
// network and its kubeconfig.
func (c *Clusters) Delete(ctx context.Context, name string) error {
	// Its cloud and gateways, by their label: the network cannot go
	// while they are on it.
	out, err := docker(ctx, nil, "ps", "--all", "--filter", "label="+labelCluster+"="+name, "--format", "{{.Names}}")
	if err != nil {
		return fmt.Errorf("delete kind cluster %s: list its containers: %w", name, err)
	}
	var made []ledger.Entry
	for _, ctr := range strings.Fields(string(out)) {
		if err := removeContainer(ctx, ctr); err != nil {
			return err
		}
		made = append(made, ledger.Entry{Kind: KindContainer, Name: ctr})
	}
	if err := c.ledger.Forget(c.owner, made...); err != nil {
		return err
	}
	err = c.kind.Delete(name, filepath.Join(c.dir, name+".kubeconfig"))
	if err == nil {
		err = removeNetwork(ctx, "edgefault-"+name)
	}
	os.Remove(filepath.Join(c.dir, name+".kubeconfig"))
	if err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", name, err)
	}
	return c.ledger.Forget(c.owner,
		ledger.Entry{Kind: KindCluster, Name: name}, ledger.Entry{Kind: KindNetwork, Name: "edgefault-" + name})
}

// Removers remove what this package records, for ledger.Sweep (edgefault
// cleanup): a cluster by kind's library, a network by the engine.
func Removers() map[string]ledger.Remover {
	kp := kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{slog.New(slog.DiscardHandler)}))
	return map[string]ledger.Remover{
		KindCluster: func(e ledger.Entry) error {
			if _, err := engineInfo(context.Background()); err != nil {
				// No engine: its containers are not running either,
				// but they exist until it is back.
				return fmt.Errorf("the Docker engine is not running: start it ('edgefault kind engine start') and run cleanup again: %w", err)
			}
			return kp.Delete(e.Name, "")
		},
		KindNetwork:   func(e ledger.Entry) error { return removeNetwork(context.Background(), e.Name) },
		KindContainer: func(e ledger.Entry) error { return removeContainer(context.Background(), e.Name) },
	}
}

func removeNetwork(ctx context.Context, name string) error {
	if _, err := docker(ctx, nil, "network", "inspect", name); err != nil {
		if notFound(err) {
			return nil // gone, or never made
		}
		return err
	}
	_, err := docker(ctx, nil, "network", "rm", name)
	return err
}

// clusterConfig is kind's config for s, with the patches this host needs.
func clusterConfig(s ClusterSpec) ([]byte, error) {
	labels := func(m map[string]string) string {
		out := ""
		for _, k := range sortedKeys(m) {
			out += fmt.Sprintf("    %s: %q\n", k, m[k])
		}
		if out != "" {
			out = "  labels:\n" + out
		}
		return out
	}
	mounts := ""
	for _, m := range s.Mounts {
		if !mountRE.MatchString(m) || strings.Contains(m, "..") {
			return nil, fmt.Errorf("mount %q: give an absolute path of letters, digits, '_', '.', '-' and '/'", m)
		}
		if mounts == "" {
			mounts = "  extraMounts:\n"
		}
		mounts += fmt.Sprintf("  - hostPath: %s\n    containerPath: %s\n", m, m)
	}
	var b strings.Builder
	b.WriteString("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n  podSubnet: " + PodSubnet + "\nnodes:\n- role: control-plane\n" + mounts)
	switch {
	case len(s.Nodes) > 0:
		for _, n := range s.Nodes {
			if !nodeNameRE.MatchString(n.Name) {
				return nil, fmt.Errorf("node name %q: use 1-63 lower-case letters, digits and '-'", n.Name)
			}
			// kubeadm registers the Node under this name (the kubelet's
			// --hostname-override), not the container's.
			b.WriteString("- role: worker\n" + labels(n.Labels) + mounts +
				"  kubeadmConfigPatches:\n  - |\n    kind: JoinConfiguration\n    nodeRegistration:\n      name: " + n.Name + "\n")
		}
	case s.Workers == 0:
		b.WriteString(labels(s.Labels))
	default:
		for i := 0; i < s.Workers; i++ {
			b.WriteString("- role: worker\n" + labels(s.Labels) + mounts)
		}
	}
	q, err := probeHost()
	if err != nil {
		return nil, err
	}
	if q.restrictOOMScoreAdj {
		// containerd would set a negative oom_score_adj on every
		// container, which needs CAP_SYS_RESOURCE this host lacks.
		b.WriteString("containerdConfigPatches:\n- |-\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    restrict_oom_score_adj = true\n")
	}
	if q.cgroupV1 {
		// kubelet 1.35+ refuses cgroup v1 unless told otherwise.
		b.WriteString("kubeadmConfigPatches:\n- |\n  kind: KubeletConfiguration\n  failCgroupV1: false\n")
	}
	return []byte(b.String()), nil
}

// hostQuirks are what this machine needs patched, found by probing.
type hostQuirks struct {
	cgroupV1            bool
	restrictOOMScoreAdj bool
}

func probeHost() (hostQuirks, error) {
	var q hostQuirks
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		q.cgroupV1 = true
	}
	// Lowering oom_score_adj is what containerd does; try it on ourselves
	// and put it back (raising it is always allowed).
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return q, err
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return q, err
	}
	if cur > -1000 {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(cur-1)), 0); err != nil {
			q.restrictOOMScoreAdj = true
		} else {
			_ = os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(cur)), 0)
		}
	}
	return q, nil
}

//go:embed flannel.yaml
var flannelTemplate string

// flannelManifest is flannel.yaml for podSubnet, flanneld reaching the API
// server at apiHost:6443 (the first control-plane node's name: kind puts
// it in the serving certificate).
func flannelManifest(podSubnet, apiHost string) (string, error) {
	t, err := template.New("flannel.yaml").Option("missingkey=error").Parse(flannelTemplate)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = t.Execute(&b, struct{ PodSubnet, Image, APIHost string }{podSubnet, FlannelImage, apiHost})
	return b.String(), err
}

// network installs the pod network, flannel with its host-gw backend
// (kind's kindnetd cannot be fetched offline), as kind installs its own:
// kubectl apply on the first control-plane node. Then it waits for every
// node to be Ready (the kubelet is not until a CNI config exists), flannel
// to run on each, and CoreDNS (a pod on the pod network) to be available.
func (c *Clusters) network(ctx context.Context, cl *Cluster) error {
	cp := cl.Name + "-control-plane" // kind's name for it
	manifest, err := flannelManifest(PodSubnet, cp)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, strings.NewReader(manifest), "exec", "-i", cp,
		"kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kind cluster %s: install flannel: %w", cl.Name, err)
	}
	if err := c.waitReady(ctx, cl, 3*time.Minute); err != nil {
		return err
	}
	// The nodes, with every Node's name and pod range.
	return c.describe(ctx, cl)
}

// Client is an admin client of the cluster.
func (cl *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// describe fills in the cluster's nodes from kind and the API.
func (c *Clusters) describe(ctx context.Context, cl *Cluster) error {
	kn, err := c.kind.ListNodes(cl.Name)
	if err != nil {
		return err
	}
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("kind cluster %s: list nodes: %w", cl.Name, err)
	}
	// By address: a Node may be named apart from its container.
	byAddr := map[netip.Addr]corev1.Node{}
	for _, n := range list.Items {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
				byAddr[ip] = n
			}
		}
	}
	cl.Nodes = nil
	for _, n := range kn {
		role, _ := n.Role()
		node := Node{Name: n.String(), Role: role}
		ipv4, _, err := n.IP()
		if err != nil {
			return err
		}
		node.Address, _ = netip.ParseAddr(ipv4)
		if k, ok := byAddr[node.Address]; ok {
			node.NodeName = k.Name
			if k.Spec.PodCIDR != "" {
				node.PodCIDR, _ = netip.ParsePrefix(k.Spec.PodCIDR)
			}
		}
		if role == "control-plane" {
			cl.Nodes = append([]Node{node}, cl.Nodes...)
		} else {
			cl.Nodes = append(cl.Nodes, node)
		}
	}
	return nil
}

func (c *Clusters) waitReady(ctx context.Context, cl *Cluster, timeout time.Duration) error {
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	why := ""
	for {
		why = ""
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			why = err.Error()
		}
		for _, n := range list.Items {
			if !nodeReady(n) {
				why = "node " + n.Name + " not Ready"
			}
		}
		if why == "" {
			why = flannelReady(ctx, cs, len(list.Items))
		}
		if why == "" {
			dns, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
			if err != nil || dns.Status.AvailableReplicas == 0 {
				why = "coredns not available"
			}
		}
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kind cluster %s not ready within %s: %s", cl.Name, timeout, why)
		case <-time.After(time.Second):
		}
	}
}

// flannelReady says why flannel is not running on all nodes, or "".
func flannelReady(ctx context.Context, cs kubernetes.Interface, nodes int) string {
	ds, err := cs.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
	if err != nil {
		return "flannel's DaemonSet: " + err.Error()
	}
	if int(ds.Status.NumberAvailable) >= nodes {
		return ""
	}
	why := fmt.Sprintf("flannel available on %d of %d nodes", ds.Status.NumberAvailable, nodes)
	pods, err := cs.CoreV1().Pods("kube-flannel").List(ctx, metav1.ListOptions{LabelSelector: "app=flannel"})
	if err != nil {
		return why
	}
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			switch {
			case s.State.Waiting != nil:
				why += fmt.Sprintf("; %s on %s: %s %s", s.Name, p.Spec.NodeName, s.State.Waiting.Reason, s.State.Waiting.Message)
			case s.State.Terminated != nil:
				why += fmt.Sprintf("; %s on %s exited: %s", s.Name, p.Spec.NodeName, s.State.Terminated.Reason)
			}
		}
	}
	return why
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// LoadImage loads an image archive (WriteImage) into every node's
// containerd, through kind's library: no registry.
func (c *Clusters) LoadImage(ctx context.Context, cl *Cluster, archive []byte) error {
	return c.loadEach(cl.Name, func() (io.Reader, func() error, error) {
		return bytes.NewReader(archive), func() error { return nil }, nil
	})
}

// LoadEngineImage loads image from the Docker engine into every node of
// cluster name (docker save, streamed to each node): no registry.
func (c *Clusters) LoadEngineImage(ctx context.Context, name, image string) error {
	if _, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		return fmt.Errorf("image %s is not in the Docker engine (no registry is used): 'docker load', 'docker build' or 'docker pull' it first: %w", image, err)
	}
	return c.loadEach(name, func() (io.Reader, func() error, error) {
		save := exec.CommandContext(ctx, "docker", "save", image)
		out, err := save.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		if err := save.Start(); err != nil {
			return nil, nil, err
		}
		return out, func() error { _, _ = io.Copy(io.Discard, out); return save.Wait() }, nil
	})
}

// loadEach loads the archive open gives (once per node) into every node of
// cluster name; done is called after each load.
func (c *Clusters) loadEach(name string, open func() (archive io.Reader, done func() error, err error)) error {
	kn, err := c.kind.ListNodes(name)
	if err != nil {
		return err
	}
	for _, n := range kn {
		r, done, err := open()
		if err != nil {
			return err
		}
		if err := errors.Join(nodeutils.LoadImageArchive(n, r), done()); err != nil {
			return fmt.Errorf("load image into %s: %w", n, err)
		}
	}
	return nil
}

// NodeContainers are the cluster's node containers as kind knows them.
func (c *Clusters) NodeContainers(name string) ([]nodes.Node, error) { return c.kind.ListNodes(name) }

// ContainerPID is the PID of a container's first process on this machine:
// /proc/PID/ns/net is its network namespace.
func ContainerPID(ctx context.Context, container string) (int, error) {
	out, err := docker(ctx, nil, "inspect", "--format", "{{.State.Pid}}", container)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s is not running", container)
	}
	return pid, nil
}

// kindLogger sends kind's messages to slog at debug level.
type kindLogger struct{ l *slog.Logger }

func (k kindLogger) Warn(message string) { k.l.Debug(message, "from", "kind") }
func (k kindLogger) Warnf(format string, args ...any) {
	k.l.Debug(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindLogger) Error(message string) { k.l.Warn(message, "from", "kind") }
func (k kindLogger) Errorf(format string, args ...any) {
	k.l.Warn(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindLogger) V(kindlog.Level) kindlog.InfoLogger { return k }
func (k kindLogger) Info(message string)                { k.l.Debug(message, "from", "kind") }
func (k kindLogger) Infof(format string, args ...any) {
	k.l.Debug(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindLogger) Enabled() bool { return true }
