package existing

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/clientcmd/api"
)

// Fleet is a topology played by a cluster's labelled nodes.
type Fleet struct {
	FleetName string        `json:"name"`
	Cluster   clusterRef    `json:"cluster"`
	Image     string        `json:"image"`
	Token     string        `json:"token"`
	RunID     string        `json:"run"`
	All       []fleetMember `json:"members"`
	// Gateways are the topology's gateways and the nodes behind each: a
	// gateway's uplink is their own links here.
	Gateways map[string][]string `json:"gateways,omitempty"`
	p        *Provider

	// collected are the evidence files Collect wrote (their paths), and
	// the node each came from.
	collectMu sync.Mutex
	collected map[string]string
}

type fleetMember struct {
	clusters.Member
	// Node is the cluster's node that plays it.
	Node string `json:"node"`
}

var _ clusters.Fleet = (*Fleet)(nil)

func (f *Fleet) dir() string       { return filepath.Join(f.p.stateRoot(), f.FleetName) }
func (f *Fleet) statePath() string { return filepath.Join(f.dir(), member.StateFile) }

// save writes the fleet's state, the run's token among it (so 0600).
func (f *Fleet) save() error { return member.SaveState(f.dir(), f) }

// Name is the fleet's name.
func (f *Fleet) Name() string { return f.FleetName }

// Provider is "existing".
func (f *Fleet) Provider() string { return ProviderName }

// Members lists the cloud and the nodes, sorted by name.
func (f *Fleet) Members() []clusters.Member {
	out := make([]clusters.Member, 0, len(f.All))
	for _, m := range f.All {
		out = append(out, m.Member)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (f *Fleet) find(name string) (*fleetMember, error) {
	var names []string
	for i := range f.All {
		if f.All[i].Name == name {
			return &f.All[i], nil
		}
		names = append(names, f.All[i].Name)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("fleet %s has no member %q (it has %s)", f.FleetName, name, strings.Join(names, ", "))
}

// Member finds a member by name.
func (f *Fleet) Member(name string) (clusters.Member, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Member{}, err
	}
	return m.Member, nil
}

// shaped are the nodes the run may impair: every member's but the
// cloud's.
func (f *Fleet) shaped() []string {
	var out []string
	for _, m := range f.All {
		if m.Role != clusters.RoleCloud {
			out = append(out, m.Node)
		}
	}
	sort.Strings(out)
	return out
}

func unsupported(what string) error {
	return fmt.Errorf("%s on an existing cluster: %w", what, clusters.ErrUnsupported)
}

// Counters are not supported yet.
func (f *Fleet) Counters(ctx context.Context, member string) (int64, int64, error) {
	return 0, 0, unsupported("the link counters of " + member)
}

// Sysctl is not supported: a cluster's nodes keep their own settings.
func (f *Fleet) Sysctl(ctx context.Context, member, key, value string) error {
	return unsupported("kernel settings of " + member)
}

// SiteConfig is the cluster's: every site is on the one cluster.
func (f *Fleet) SiteConfig(site string) (*rest.Config, error) { return f.Cluster.config() }

// Kubeconfig is the user's kubeconfig, reduced to its context; a
// member's own identity is not supported (the cluster's nodes have
// theirs).
func (f *Fleet) Kubeconfig(site, member string) ([]byte, error) {
	if member != "" {
		return nil, unsupported("a member's own kubeconfig")
	}
	raw, err := clientcmd.LoadFromFile(f.Cluster.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", f.Cluster.Kubeconfig, err)
	}
	if f.Cluster.Context != "" {
		raw.CurrentContext = f.Cluster.Context
	}
	if err := api.MinifyConfig(raw); err != nil {
		return nil, err
	}
	return clientcmd.Write(*raw)
}

// MemberKubeconfig is not supported.
func (f *Fleet) MemberKubeconfig(member string) (string, error) {
	return "", unsupported("a member's own kubeconfig")
}

var _ clusters.OnCluster = (*Fleet)(nil)

// ClusterName names the cluster: the kubeconfig (and context) and its
// API server.
func (f *Fleet) ClusterName() string {
	name := f.Cluster.String()
	if cfg, err := f.Cluster.config(); err == nil {
		name += " at " + cfg.Host
	}
	return name
}
