package kind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// ProviderName is the kind provider's name, as --provider takes it.
const ProviderName = "kind"

// Provider runs fleets on kind: one kind cluster per site with a worker per
// node (its Node named after the member), the cloud and every gateway a
// container, all on a WAN network of the fleet's own (gateway.go). The
// harness's processes (the runtime, the workloads, the cloud's servers) run
// in the members' network namespaces, which are the containers'.
type Provider struct {
	ledger     *ledger.Ledger
	log        *slog.Logger
	nodeImage  string
	shaperOpts []shaper.Option
}

// Option configures a Provider.
type Option func(*Provider)

// WithLedger records into l (default: ledger.DefaultDir()).
func WithLedger(l *ledger.Ledger) Option { return func(p *Provider) { p.ledger = l } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(p *Provider) {
		if l != nil {
			p.log = l
		}
	}
}

// WithNodeImage sets the node image (default: the one BuildNodeImage
// builds from the cache of edgefault setup --kind).
func WithNodeImage(ref string) Option { return func(p *Provider) { p.nodeImage = ref } }

// WithShaperOptions are given to the shaper of every fleet (the backend).
func WithShaperOptions(o ...shaper.Option) Option {
	return func(p *Provider) { p.shaperOpts = append(p.shaperOpts, o...) }
}

// NewProvider returns a kind provider.
func NewProvider(opts ...Option) (*Provider, error) {
	p := &Provider{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(p)
	}
	if p.ledger == nil {
		l, err := ledger.Open(ledger.DefaultDir())
		if err != nil {
			return nil, err
		}
		p.ledger = l
	}
	return p, nil
}

var _ clusters.Provider = (*Provider)(nil)

// Name is "kind".
func (p *Provider) Name() string { return ProviderName }

// Info is what the kind provider models.
func (p *Provider) Info() clusters.Info { return Info() }

// Info: commands run as processes in the members' namespaces, images as
// pods on the nodes; gateways are shaped router containers, not Nodes, and
// run no runtime; every site is a real cluster.
func Info() clusters.Info {
	return clusters.Info{Name: ProviderName, Commands: true, Images: true, Gateways: true, GatewayRuntime: false, NodeLinks: true, ControlPlanes: true}
}

// stateRoot holds every kind fleet's directory (state, logs, evidence).
func (p *Provider) stateRoot() string {
	return filepath.Join(filepath.Dir(p.ledger.Dir()), "kind-fleets")
}

// Up creates fleet name from spec: the WAN and the cloud, then per site a
// kind cluster, its gateways and the nodes' routes through them, then the
// topology's link profiles. Everything is recorded before it is made; an
// Up that fails removes what it made.
func (p *Provider) Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (_ clusters.Fleet, err error) {
	if err := clusters.ValidateFleetName(name); err != nil {
		return nil, err
	}
	if name != strings.ToLower(name) {
		return nil, fmt.Errorf("fleet name %q: kind fleets take lower-case names (they name containers and clusters)", name)
	}
	// The lock the embedded fleet's provider takes for the name too: the
	// names share one ledger.
	unlock, err := member.LockFleet(p.ledger, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if es, err := p.ledger.Entries(name); err != nil {
		return nil, err
	} else if len(es) > 0 {
		return nil, fmt.Errorf("fleet name %q is in use (a fleet of that name is up, or was left by a crash): 'edgefault fleet list --provider netns|kind' shows it; 'edgefault cleanup --fleet %s' removes what was left", name, name)
	}
	image := p.nodeImage
	if image == "" {
		if image, err = NodeImageRef(k8sbin.Cache{Dir: k8sbin.DefaultDir()}); err != nil {
			return nil, err
		}
	}
	if _, err := EnsureEngine(ctx, EngineOptions{Ledger: p.ledger, Log: p.log}); err != nil {
		return nil, err
	}
	if _, err := imageSize(ctx, image); err != nil {
		return nil, fmt.Errorf("node image %s is not in the Docker engine: run 'edgefault kind node-image' (%w)", image, err)
	}
	for _, s := range spec.Sites {
		if c := name + "-" + s.Name; !clusterNameRE.MatchString(c) {
			return nil, fmt.Errorf("site %q: its kind cluster would be named %q: use lower-case letters, digits and '-', at most 40 with the fleet's name", s.Name, c)
		}
	}
	start := time.Now()
	f := &Fleet{FleetName: name, Created: start.UTC(), p: p}
	// The fleet's directory and the kubeconfigs are state the ledger
	// removes with the fleet.
	cs, err := NewClusters(p.ledger, name, p.log)
	if err != nil {
		return nil, err
	}
	if err := p.ledger.Record(name, ledger.Entry{Kind: ledger.KindState, Name: f.dir(), Time: start},
		ledger.Entry{Kind: ledger.KindState, Name: cs.dir, Time: start}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Under the lock Up holds.
			if derr := p.down(name); derr != nil {
				err = errors.Join(err, fmt.Errorf("removing what was made: %w", derr))
			}
		}
	}()
	if err := os.MkdirAll(f.dir(), 0o755); err != nil {
		return nil, err
	}
	wan, err := cs.CreateWAN(ctx, name+"-wan")
	if err != nil {
		return nil, err
	}
	f.WAN = *wan
	cloud := name + "-cloud"
	if err := nameFree(ctx, cloud); err != nil {
		return nil, err
	}
	if err := p.ledger.Record(name, ledger.Entry{Kind: KindContainer, Name: cloud, Time: time.Now()}); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, nil, "run", "-d", "--name", cloud, "--hostname", clusters.CloudName, "--network", wan.Name,
		"--label", "io.edgefault.owner="+name, "--entrypoint", "sleep", image, "infinity"); err != nil {
		return nil, fmt.Errorf("start the cloud's container: %w", err)
	}
	cloudAddr, err := containerAddr(ctx, cloud, wan.Name)
	if err != nil {
		return nil, err
	}
	f.All = append(f.All, fleetMember{Member: clusters.Member{Name: clusters.CloudName, Role: clusters.RoleCloud, Address: cloudAddr.String(), Location: "container " + cloud}, Container: cloud})

	all := spec.Members()
	for _, s := range spec.Sites {
		var ns []NodeSpec
		for _, m := range all {
			if m.Site == s.Name && m.Role == clusters.RoleNode {
				labels := map[string]string{clusters.LabelSite: s.Name, clusters.LabelRole: clusters.RoleNode}
				if m.Building != "" {
					labels[clusters.LabelBuilding] = m.Building
				}
				ns = append(ns, NodeSpec{Name: m.Name, Labels: labels})
			}
		}
		p.log.Info("creating the site's kind cluster", "site", s.Name, "nodes", len(ns))
		// The fleet's directory is mounted into every node at the same
		// path: image workloads write their evidence there.
		cl, err := cs.Create(ctx, ClusterSpec{Name: name + "-" + s.Name, NodeImage: image, Nodes: ns, Mounts: []string{f.dir()}})
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", s.Name, err)
		}
		f.Sites = append(f.Sites, fleetSite{Name: s.Name, Cluster: cl.Name, Kubeconfig: cl.Kubeconfig, APIServer: cl.Nodes[0].Address.String()})
		gws := map[string]*Gateway{}
		for _, m := range all {
			if m.Site != s.Name || m.Role != clusters.RoleGateway {
				continue
			}
			g, err := cs.StartGateway(ctx, cl, GatewaySpec{Name: m.Name, WAN: wan, Image: image})
			if err != nil {
				return nil, err
			}
			gws[m.Name] = g
			f.All = append(f.All, fleetMember{Member: clusters.Member{Name: m.Name, Role: clusters.RoleGateway, Site: s.Name, Building: m.Building,
				Address: g.LAN.String(), WANAddress: g.WANAddress.String(), Location: "container " + g.Container},
				Container: g.Container, Link: g.WANLink, Profile: m.Link})
		}
		for _, m := range all {
			if m.Site != s.Name || m.Role != clusters.RoleNode {
				continue
			}
			i := slices.IndexFunc(cl.Nodes, func(n Node) bool { return n.NodeName == m.Name })
			if i < 0 {
				return nil, fmt.Errorf("site %s: no Node %s registered in cluster %s", s.Name, m.Name, cl.Name)
			}
			n := cl.Nodes[i]
			if err := RouteVia(ctx, n.Name, wan.Subnet, gws[m.Gateway]); err != nil {
				return nil, err
			}
			if err := WaitRoute(ctx, n.Name, cloudAddr, 30*time.Second); err != nil {
				return nil, err
			}
			f.All = append(f.All, fleetMember{Member: clusters.Member{Name: m.Name, Role: clusters.RoleNode, Site: s.Name, Building: m.Building,
				Gateway: m.Gateway, Address: n.Address.String(), Location: "kind node " + n.Name}, Container: n.Name, Link: "eth0", Profile: m.Link})
		}
	}
	if err := f.resolve(ctx); err != nil {
		return nil, err
	}
	if err := f.applyProfiles(ctx); err != nil {
		return nil, err
	}
	if err := f.save(); err != nil {
		return nil, err
	}
	p.log.Info("fleet up", "fleet", name, "provider", ProviderName, "sites", len(f.Sites), "members", len(f.All), "elapsed", time.Since(start).Round(100*time.Millisecond))
	return f, nil
}

// Get returns a fleet that is up.
func (p *Provider) Get(ctx context.Context, name string) (clusters.Fleet, error) {
	if err := clusters.ValidateFleetName(name); err != nil {
		return nil, err
	}
	f := &Fleet{p: p, FleetName: name}
	if err := member.LoadState(f.dir(), f); errors.Is(err, member.ErrNoState) {
		return nil, fmt.Errorf("kind fleet %q is not up ('edgefault fleet list --provider kind')", name)
	} else if err != nil {
		return nil, fmt.Errorf("kind fleet %s: %w", name, err)
	}
	f.p = p
	return f, f.resolve(ctx)
}

// List names the kind fleets that are up.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	return member.ListStates(p.stateRoot())
}

// Down removes everything recorded for the fleet, newest first: its
// processes, gateways, clusters, cloud, WAN and state.
func (p *Provider) Down(ctx context.Context, name string) error {
	if err := clusters.ValidateFleetName(name); err != nil {
		return err
	}
	// Waits for an Up or Down of the name in progress, as long as ctx
	// lets it.
	unlock, err := member.WaitLockFleet(ctx, p.ledger, name)
	if err != nil {
		return err
	}
	defer unlock()
	return p.down(name)
}

// down is Down under the fleet's lock.
func (p *Provider) down(name string) error {
	es, err := p.ledger.Entries(name)
	if err != nil {
		return err
	}
	if len(es) == 0 {
		return fmt.Errorf("kind fleet %q is not up (nothing recorded for it)", name)
	}
	dir := (&Fleet{p: p, FleetName: name}).dir()
	if !slices.ContainsFunc(es, func(e ledger.Entry) bool { return e.Kind == ledger.KindState && e.Name == dir }) {
		return fmt.Errorf("%q is not a kind fleet: take it down with the provider that made it ('edgefault fleet down --fleet %s', the embedded fleet's) or 'edgefault cleanup --fleet %s'", name, name, name)
	}
	rm := shaper.Removers()
	maps.Copy(rm, Removers())
	if err := p.ledger.Sweep(name, rm); err != nil {
		return err
	}
	// What the fleet's shaper remembered of its links.
	return os.RemoveAll(filepath.Join(filepath.Dir(p.ledger.Dir()), "shape", name))
}
