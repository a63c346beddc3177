// Package k3d makes k3s clusters in Docker by driving the k3d CLI, where it
// is installed. The Go module proxy this project builds from refuses k3s and
// k3d, so k3d is neither built nor vendored: this package constructs k3d's
// commands (unit-tested), records every cluster in the ledger before
// creating it, and finds the node containers by the labels k3d puts on them,
// so their links can be shaped like kind's (clusters/kind.NodeTarget).
//
// It has not run on a machine without k3d (this project's CI has none);
// docs/kind.md says so.
package k3d

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/ledger"
)

// KindCluster is the ledger entry kind of a k3d cluster (Name).
const KindCluster = "k3d-cluster"

// Container labels k3d puts on every container of a cluster.
const (
	labelCluster = "k3d.cluster"
	labelRole    = "k3d.role"
)

// ErrNotInstalled is returned (wrapped) when no k3d CLI is on PATH.
var ErrNotInstalled = errors.New("the k3d CLI is not installed")

// ClusterSpec is a k3d cluster to create.
type ClusterSpec struct {
	// Name is the cluster's name (containers are k3d-Name-server-0,
	// k3d-Name-agent-0, ...).
	Name string
	// Agents is how many agent nodes beside the one server.
	Agents int
	// Image is the k3s image (empty: k3d's default). It must already be in
	// the Docker engine where no registry is reachable.
	Image string
	// Labels are put on every agent Node (the server's when there are no
	// agents).
	Labels map[string]string
	// Network is an existing Docker network to put the nodes on (empty:
	// k3d makes k3d-Name).
	Network string
	// Timeout bounds k3d's wait for the nodes (0: 5 minutes).
	Timeout time.Duration
}

var (
	clusterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	labelKeyRE    = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	imageRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:@-]{0,254}$`)
	networkRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// CreateArgs are k3d's arguments to create s. Every name is validated
// first: each becomes an argument of a command, and a label's value is
// parsed by k3d (an '@' would select other nodes).
func CreateArgs(s ClusterSpec) ([]string, error) {
	if err := validName(s.Name); err != nil {
		return nil, err
	}
	if s.Agents < 0 || s.Agents > 64 {
		return nil, fmt.Errorf("k3d cluster %s: %d agents: use 0-64", s.Name, s.Agents)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	args := []string{"cluster", "create", s.Name,
		"--servers", "1", "--agents", strconv.Itoa(s.Agents),
		// The API server is reached on the node's own address: no load
		// balancer container, no port on the host.
		"--no-lb",
		"--wait", "--timeout", timeout.String(),
		// Never touch the user's ~/.kube/config: the kubeconfig is
		// written where edgefault keeps its state.
		"--kubeconfig-update-default=false", "--kubeconfig-switch-context=false",
	}
	if s.Image != "" {
		if !imageRE.MatchString(s.Image) {
			return nil, fmt.Errorf("k3d cluster %s: image %q is not an image reference", s.Name, s.Image)
		}
		args = append(args, "--image", s.Image)
	}
	if s.Network != "" {
		if !networkRE.MatchString(s.Network) {
			return nil, fmt.Errorf("k3d cluster %s: network %q: use letters, digits, '_', '.' and '-'", s.Name, s.Network)
		}
		args = append(args, "--network", s.Network)
	}
	filter := "agent:*"
	if s.Agents == 0 {
		filter = "server:0"
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.Labels[k]
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
			return nil, fmt.Errorf("k3d cluster %s: label %q=%q is not a Kubernetes label", s.Name, k, v)
		}
		args = append(args, "--k3s-node-label", k+"="+v+"@"+filter)
	}
	return args, nil
}

// DeleteArgs are k3d's arguments to delete cluster name.
func DeleteArgs(name string) []string { return []string{"cluster", "delete", name} }

// KubeconfigArgs are k3d's arguments to print cluster name's admin
// kubeconfig.
func KubeconfigArgs(name string) []string { return []string{"kubeconfig", "get", name} }

// ImportArgs are k3d's arguments to load an image archive into every node
// of cluster name (no registry).
func ImportArgs(name, archive string) []string {
	return []string{"image", "import", archive, "--cluster", name}
}

func validName(name string) error {
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("k3d cluster name %q: use 1-32 lower-case letters, digits and '-'", name)
	}
	return nil
}

// Find returns the k3d CLI on PATH.
func Find() (string, error) {
	p, err := exec.LookPath("k3d")
	if err != nil {
		return "", fmt.Errorf("%w: install k3d v5 (https://k3d.io) and put it on PATH, with its k3s image loaded into the Docker engine where no registry is reachable; or use kind ('edgefault kind create'), which edgefault builds offline", ErrNotInstalled)
	}
	return p, nil
}

// Clusters creates and deletes k3d clusters through the k3d CLI,
// recording each in the ledger first.
type Clusters struct {
	cli    string
	ledger *ledger.Ledger
	owner  string
	log    *slog.Logger
	dir    string
}

// Cluster is a k3d cluster that is up.
type Cluster struct {
	Name string
	// Kubeconfig is the admin kubeconfig's path on this machine.
	Kubeconfig string
	// Nodes are its node containers, servers first.
	Nodes []Node
}

// Node is one of a cluster's containers.
type Node struct {
	// Container is the container's name (the Node object's is the same).
	Container string
	// Role is k3d's: server, agent.
	Role string
}

// NewClusters returns a Clusters that records what it creates under owner
// in l. It fails with ErrNotInstalled when there is no k3d CLI.
func NewClusters(l *ledger.Ledger, owner string, log *slog.Logger) (*Clusters, error) {
	if err := ledger.ValidOwner(owner); err != nil {
		return nil, err
	}
	cli, err := Find()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(filepath.Dir(l.Dir()), "k3d", owner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Clusters{cli: cli, ledger: l, owner: owner, log: log, dir: dir}, nil
}

// Create makes the cluster and writes its kubeconfig. A Create that fails
// removes what it made.
func (c *Clusters) Create(ctx context.Context, s ClusterSpec) (_ *Cluster, err error) {
	args, err := CreateArgs(s)
	if err != nil {
		return nil, err
	}
	if n, err := containers(ctx, s.Name); err != nil {
		return nil, fmt.Errorf("is the Docker engine running? ('edgefault kind engine start'): %w", err)
	} else if len(n) > 0 {
		return nil, fmt.Errorf("k3d cluster %q already exists: delete it ('edgefault k3d delete %s' if edgefault made it, else 'k3d cluster delete %s') or choose another name", s.Name, s.Name, s.Name)
	}
	// The kubeconfig holds admin credentials: recorded, so that delete
	// and cleanup remove it with the cluster.
	if err := c.ledger.Record(c.owner, ledger.Entry{Kind: ledger.KindState, Name: filepath.Join(c.dir, s.Name+".kubeconfig"), Time: time.Now()},
		ledger.Entry{Kind: KindCluster, Name: s.Name, Time: time.Now()}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := c.Delete(context.WithoutCancel(ctx), s.Name); derr != nil {
				err = errors.Join(err, fmt.Errorf("removing what was made: %w", derr))
			}
		}
	}()
	start := time.Now()
	if _, err := run(ctx, c.cli, args...); err != nil {
		return nil, err
	}
	c.log.Info("k3d cluster created", "cluster", s.Name, "took", time.Since(start).Round(100*time.Millisecond))
	kc, err := run(ctx, c.cli, KubeconfigArgs(s.Name)...)
	if err != nil {
		return nil, err
	}
	cl := &Cluster{Name: s.Name, Kubeconfig: filepath.Join(c.dir, s.Name+".kubeconfig")}
	if err := os.WriteFile(cl.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	if cl.Nodes, err = containers(ctx, s.Name); err != nil {
		return nil, err
	}
	return cl, nil
}

// LoadImage loads an image archive (a docker-archive tar) into every node.
func (c *Clusters) LoadImage(ctx context.Context, cl *Cluster, archive string) error {
	_, err := run(ctx, c.cli, ImportArgs(cl.Name, archive)...)
	return err
}

// Delete removes the cluster and its kubeconfig.
func (c *Clusters) Delete(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if err := remove(ctx, c.cli, name); err != nil {
		return err
	}
	kc := filepath.Join(c.dir, name+".kubeconfig")
	os.Remove(kc)
	return c.ledger.Forget(c.owner, ledger.Entry{Kind: KindCluster, Name: name}, ledger.Entry{Kind: ledger.KindState, Name: kc})
}

// Removers remove what this package records, for ledger.Sweep (edgefault
// cleanup): with the k3d CLI where it is installed, else the cluster's
// containers and network by k3d's labels, so a machine that lost k3d is
// still cleaned.
func Removers() map[string]ledger.Remover {
	return map[string]ledger.Remover{
		KindCluster: func(e ledger.Entry) error {
			if err := validName(e.Name); err != nil {
				return err
			}
			cli, _ := Find()
			return remove(context.Background(), cli, e.Name)
		},
	}
}

// remove deletes cluster name with the k3d CLI (cli non-empty) or by its
// containers' labels.
func remove(ctx context.Context, cli, name string) error {
	nodes, err := containers(ctx, name)
	if err != nil {
		return fmt.Errorf("the Docker engine is not running: start it ('edgefault kind engine start') and run cleanup again: %w", err)
	}
	if len(nodes) == 0 {
		return nil // gone, or never made
	}
	if cli != "" {
		_, err := run(ctx, cli, DeleteArgs(name)...)
		return err
	}
	for _, n := range nodes {
		if _, err := run(ctx, "docker", "rm", "--force", "--volumes", n.Container); err != nil {
			return err
		}
	}
	// k3d's own network and image volume, if it made them: removal fails
	// harmlessly while something else still uses them.
	_, _ = run(ctx, "docker", "network", "rm", "k3d-"+name)
	_, _ = run(ctx, "docker", "volume", "rm", "k3d-"+name+"-images")
	return nil
}

// containers lists cluster name's containers by k3d's labels, servers
// first.
func containers(ctx context.Context, name string) ([]Node, error) {
	out, err := run(ctx, "docker", "ps", "--all", "--filter", "label="+labelCluster+"="+name,
		"--format", "{{.Names}}\t{{.Label \""+labelRole+"\"}}")
	if err != nil {
		return nil, err
	}
	return parseContainers(out), nil
}

// parseContainers reads docker ps lines "name<TAB>role", servers first,
// then by name; other roles (a load balancer, tools) are not nodes.
func parseContainers(out []byte) []Node {
	var nodes []Node
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, role, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok || (role != "server" && role != "agent") {
			continue
		}
		nodes = append(nodes, Node{Container: name, Role: role})
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].Role != nodes[j].Role {
			return nodes[i].Role == "server"
		}
		return nodes[i].Container < nodes[j].Container
	})
	return nodes
}

// run runs a CLI; its stderr is in the error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args[:min(len(args), 2)], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
