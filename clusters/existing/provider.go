package existing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KindNamespace is the ledger's kind for the namespace a fleet deployed
// on a cluster: its Name is the namespace, its Handle the cluster (a
// JSON clusterRef), so cleanup reaches it after a crash.
const KindNamespace = "existing-namespace"

// Provider plays fleets on a cluster the harness did not make: the
// members are its labelled nodes (Map), and what Up deploys (Deploy) is
// all it changes there.
type Provider struct {
	ref    clusterRef
	image  string
	ledger *ledger.Ledger
	log    *slog.Logger
}

// clusterRef says which cluster: a kubeconfig file and a context in it
// (and in a ledger entry, the run whose namespace it is).
type clusterRef struct {
	Kubeconfig string `json:"kubeconfig"`
	Context    string `json:"context,omitempty"`
	Run        string `json:"run,omitempty"`
}

// Option configures a Provider.
type Option func(*Provider)

// WithKubeconfig is the cluster's kubeconfig (default: $KUBECONFIG, then
// ~/.kube/config, as kubectl finds it).
func WithKubeconfig(path string) Option { return func(p *Provider) { p.ref.Kubeconfig = path } }

// WithContext picks a context of the kubeconfig (default: its current
// one).
func WithContext(name string) Option { return func(p *Provider) { p.ref.Context = name } }

// WithImage is the runtime's image, already on the cluster's nodes (or
// in a registry they reach): the agent runs `edgeguard agent` in it.
func WithImage(ref string) Option { return func(p *Provider) { p.image = ref } }

// WithLedger records into l (default: ledger.DefaultDir(), opened when a
// fleet goes up or down).
func WithLedger(l *ledger.Ledger) Option { return func(p *Provider) { p.ledger = l } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(p *Provider) {
		if l != nil {
			p.log = l
		}
	}
}

// NewProvider returns the provider of the cluster the options name.
func NewProvider(opts ...Option) (*Provider, error) {
	p := &Provider{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(p)
	}
	if p.ref.Kubeconfig == "" {
		p.ref.Kubeconfig = clientcmd.NewDefaultClientConfigLoadingRules().GetDefaultFilename()
	}
	abs, err := filepath.Abs(p.ref.Kubeconfig)
	if err != nil {
		return nil, err
	}
	p.ref.Kubeconfig = abs
	return p, nil
}

var _ clusters.Provider = (*Provider)(nil)

// Name is "existing".
func (p *Provider) Name() string { return ProviderName }

// Info is what the provider models.
func (p *Provider) Info() clusters.Info { return Info() }

// Info: nodes' own links are shaped (through the node agent), and a
// gateway's uplink as the links of the nodes behind it; the cluster is
// readable; the runtime, the built-in workloads and the cloud's services
// run as pods from the runtime's image (Pods). A user's app does not run
// here yet: the harness runs no binary of its machine on a node, and
// confines an app (clusters.Sandbox) with files it prepares on its own
// disk.
func Info() clusters.Info {
	return clusters.Info{Name: ProviderName, Pods: true, NodeLinks: true, GatewayLinks: true, ControlPlanes: true}
}

// config is the cluster's client configuration.
func (r clusterRef) config() (*rest.Config, error) {
	if _, err := os.Stat(r.Kubeconfig); err != nil {
		return nil, fmt.Errorf("the cluster's kubeconfig: %w (give --kubeconfig FILE)", err)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: r.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: r.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s (context %q): %w", r.Kubeconfig, r.Context, err)
	}
	cfg.Timeout = 30 * time.Second
	// Not client-go's default of 5 requests a second: every change of a
	// link is a request, and a scenario changes several at once (measured:
	// the default held each change to 200 ms, two at once to 400 ms).
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

func (r clusterRef) client() (kubernetes.Interface, error) {
	cfg, err := r.config()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (r clusterRef) String() string {
	if r.Context == "" {
		return r.Kubeconfig
	}
	return r.Kubeconfig + " (context " + r.Context + ")"
}

// Client is a client of the provider's cluster.
func (p *Provider) Client() (kubernetes.Interface, error) { return p.ref.client() }

// Mapping is the cluster's nodes and the members they play (Map).
func (p *Provider) Mapping(ctx context.Context) ([]Mapped, error) {
	cs, err := p.ref.client()
	if err != nil {
		return nil, err
	}
	return Map(ctx, cs)
}

// led is the ledger, opened when first needed: listing and planning,
// which only read, need no write access to the state directory.
func (p *Provider) led() (*ledger.Ledger, error) {
	if p.ledger == nil {
		l, err := ledger.Open(ledger.DefaultDir())
		if err != nil {
			return nil, err
		}
		p.ledger = l
	}
	return p.ledger, nil
}

func (p *Provider) stateRoot() string {
	dir := ledger.DefaultDir()
	if p.ledger != nil {
		dir = p.ledger.Dir()
	}
	return filepath.Join(filepath.Dir(dir), "existing-fleets")
}

// Up checks that the cluster's labelled nodes can play spec (Check) and
// deploys the run's agent, its RBAC, Lease, ConfigMap and Secret (Deploy)
// on the nodes that play members, and waits until an agent runs on each.
func (p *Provider) Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (_ clusters.Fleet, err error) {
	if err := clusters.ValidateFleetName(name); err != nil {
		return nil, err
	}
	if p.image == "" {
		return nil, errors.New("the runtime's image is required: it must be on the cluster's nodes (or in a registry they reach), give it with --agent-image")
	}
	cs, err := p.ref.client()
	if err != nil {
		return nil, err
	}
	mapped, err := Map(ctx, cs)
	if err != nil {
		return nil, err
	}
	if err := Check(mapped, spec); err != nil {
		return nil, err
	}
	led, err := p.led()
	if err != nil {
		return nil, err
	}
	unlock, err := member.LockFleet(led, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if es, err := led.Entries(name); err != nil {
		return nil, err
	} else if len(es) > 0 {
		return nil, fmt.Errorf("fleet name %q is in use (a fleet of that name is up, or was left by a crash): 'edgefault cleanup --fleet %s' removes what was left", name, name)
	}
	f := &Fleet{FleetName: name, Cluster: p.ref, Image: p.image, Token: NewToken(), RunID: NewRunID(name), p: p}
	for _, m := range mapped {
		wanted := slices.ContainsFunc(spec.Members(), func(w scenarios.Member) bool { return w.Name == m.Member && w.Role == clusters.RoleNode })
		if m.Problem != "" || !(wanted || m.Role == clusters.RoleCloud) {
			continue
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, m.Node, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", m.Node, err)
		}
		f.All = append(f.All, fleetMember{Member: clusters.Member{Name: m.Member, Role: m.Role, Site: m.Site, Building: m.Building,
			Address: internalIP(n), Location: "node " + m.Node}, Node: m.Node})
	}
	f.Gateways = Gateways(spec)
	ref := p.ref
	ref.Run = f.RunID
	handle, _ := json.Marshal(ref)
	now := time.Now()
	if err := led.Record(name, ledger.Entry{Kind: ledger.KindState, Name: f.dir(), Time: now},
		ledger.Entry{Kind: KindNamespace, Name: Namespace, Handle: string(handle), Time: now}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := led.Sweep(name, Removers()); derr != nil {
				err = errors.Join(err, fmt.Errorf("removing what was deployed: %w", derr))
			}
		}
	}()
	if err := os.MkdirAll(f.dir(), 0o700); err != nil {
		return nil, err
	}
	if err := Deploy(ctx, cs, Run{ID: f.RunID, Nodes: f.shaped(), Image: p.image, Token: f.Token}); err != nil {
		return nil, err
	}
	if err := f.save(); err != nil {
		return nil, err
	}
	var nodes []string
	for _, m := range f.All {
		nodes = append(nodes, m.Node)
	}
	p.log.Info("waiting for the node agents", "nodes", len(nodes))
	if err := waitAgents(ctx, cs, nodes, 2*time.Minute); err != nil {
		return nil, err
	}
	p.log.Info("fleet up", "fleet", name, "provider", ProviderName, "cluster", p.ref.String(), "members", len(f.All), "elapsed", time.Since(now).Round(100*time.Millisecond))
	return f, nil
}

// Gateways are the topology's gateways and the node members behind each:
// on a cluster whose nodes each have their own uplink, a gateway's
// uplink is their links (Info.GatewayLinks).
func Gateways(spec *scenarios.FleetSpec) map[string][]string {
	out := map[string][]string{}
	for _, m := range spec.Members() {
		if m.Role == clusters.RoleNode && m.Gateway != "" {
			out[m.Gateway] = append(out[m.Gateway], m.Name)
		}
	}
	return out
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// Get returns a fleet that is up.
func (p *Provider) Get(ctx context.Context, name string) (clusters.Fleet, error) {
	if err := clusters.ValidateFleetName(name); err != nil {
		return nil, err
	}
	f := &Fleet{p: p, FleetName: name}
	if err := member.LoadState(f.dir(), f); errors.Is(err, member.ErrNoState) {
		return nil, fmt.Errorf("fleet %q is not up on an existing cluster ('edgefault fleet list --provider existing')", name)
	} else if err != nil {
		return nil, fmt.Errorf("fleet %s: %w", name, err)
	}
	return f, nil
}

// List names the fleets that are up.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	return member.ListStates(p.stateRoot())
}

// Down removes what the fleet deployed on the cluster (its namespace, and
// so the agents, which clear what they applied as they stop) and its
// state.
func (p *Provider) Down(ctx context.Context, name string) error {
	if err := clusters.ValidateFleetName(name); err != nil {
		return err
	}
	led, err := p.led()
	if err != nil {
		return err
	}
	unlock, err := member.WaitLockFleet(ctx, led, name)
	if err != nil {
		return err
	}
	defer unlock()
	es, err := led.Entries(name)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(es, func(e ledger.Entry) bool { return e.Kind == KindNamespace }) {
		return fmt.Errorf("%q is not a fleet on an existing cluster (nothing recorded for it): 'edgefault fleet list' shows the fleets of the other providers", name)
	}
	return led.Sweep(name, Removers())
}

// Removers remove what the provider records: the namespace it deployed
// on a cluster, waiting until the cluster has deleted it.
func Removers() map[string]ledger.Remover {
	return map[string]ledger.Remover{
		KindNamespace: func(e ledger.Entry) error {
			var ref clusterRef
			if err := json.Unmarshal([]byte(e.Handle), &ref); err != nil {
				return fmt.Errorf("the cluster of namespace %s: %w", e.Name, err)
			}
			cs, err := ref.client()
			if err != nil {
				return fmt.Errorf("namespace %s on %s: %w (delete it there yourself: kubectl delete namespace %s)", e.Name, ref, err, e.Name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := Remove(ctx, cs, ref.Run, 2*time.Minute); err != nil && !errors.Is(err, ErrNotOurs) {
				return err
			}
			return nil // another run's or the user's namespace stays theirs
		},
	}
}
