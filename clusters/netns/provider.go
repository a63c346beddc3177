package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	memberpkg "github.com/edgefault/edgefault/clusters/internal/member"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// Provider builds embedded fleets.
type Provider struct {
	ledger     *ledger.Ledger
	stateDir   string
	log        *slog.Logger
	shaperOpts []shaper.Option
	helper     string
	k8s        *k8sbin.Cache
	scheduling bool
	extra      map[string]ledger.Remover
}

// WithControlPlanes gives every site its own Kubernetes control plane
// (see controlplane.go), from binaries `edgefault setup` built into c:
// etcd, kube-apiserver and kwok, with memory-lean settings. A site whose
// spec says controlPlane: none gets none.
func WithControlPlanes(c k8sbin.Cache) Option { return func(p *Provider) { p.k8s = &c } }

// WithScheduling also starts kube-controller-manager and kube-scheduler
// in every control plane, with every API group, so Deployments and
// DaemonSets schedule (on kwok) and drains have pods to evict.
func WithScheduling() Option { return func(p *Provider) { p.scheduling = true } }

// Option configures a Provider.
type Option func(*Provider)

// WithLedger records created objects in l (default: the default ledger).
func WithLedger(l *ledger.Ledger) Option { return func(p *Provider) { p.ledger = l } }

// WithLogger sets where progress goes.
func WithLogger(l *slog.Logger) Option { return func(p *Provider) { p.log = l } }

// WithShaperOptions passes options to the shaper that applies link profiles.
func WithShaperOptions(o ...shaper.Option) Option {
	return func(p *Provider) { p.shaperOpts = append(p.shaperOpts, o...) }
}

// WithRemovers adds removers for entries other providers record in the
// same ledger (a kind cluster, a Docker network), so that Sweep (edgefault
// cleanup) removes those too.
func WithRemovers(r map[string]ledger.Remover) Option {
	return func(p *Provider) {
		if p.extra == nil {
			p.extra = map[string]ledger.Remover{}
		}
		for k, v := range r {
			p.extra[k] = v
		}
	}
}

// WithHelper names the binary that runs the fleet's helper processes (the
// ledger's start gate, the shaper's delayer): edgefault or edgeguard, or any
// program that calls shaper.RunHelperIfInvoked first in main. By default the
// running executable is, which is right for edgefault itself and for test
// binaries that call it in TestMain; a user's own test suite names
// edgeguard (harness/edgetest does).
func WithHelper(path string) Option { return func(p *Provider) { p.helper = path } }

// NewProvider returns the embedded-fleet provider.
func NewProvider(opts ...Option) (*Provider, error) {
	p := &Provider{log: slog.Default()}
	for _, o := range opts {
		o(p)
	}
	if p.ledger == nil {
		var lo []ledger.Option
		if p.helper != "" {
			lo = append(lo, ledger.WithHelper(p.helper))
		}
		l, err := ledger.Open(ledger.DefaultDir(), lo...)
		if err != nil {
			return nil, err
		}
		p.ledger = l
	}
	p.stateDir = filepath.Join(filepath.Dir(p.ledger.Dir()), "fleets")
	if err := os.MkdirAll(p.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet state directory: %w", err)
	}
	return p, nil
}

// providerName is what --provider takes.
const providerName = "netns"

// Name is "netns".
func (p *Provider) Name() string { return providerName }

// Ledger is the ledger the provider records into.
func (p *Provider) Ledger() *ledger.Ledger { return p.ledger }

// Member is a fleet member with its network namespace.
type Member struct {
	clusters.Member
	// Namespace is the member's network namespace (<fleet>-<name>).
	Namespace string `json:"namespace"`
}

// NetnsMember finds a member by name or namespace name, with its
// namespace: for code that works on the embedded fleet itself (its tests,
// benchmarks); the harness goes through clusters.Fleet.
func (f *Fleet) NetnsMember(name string) (Member, error) {
	m, err := f.find(name)
	if err != nil {
		return Member{}, err
	}
	return m.Member, nil
}

// member is a fleet member with what the provider needs to find its links.
type member struct {
	Member
	// Dev is the member's LAN interface (eth0 on nodes and the cloud, lan0
	// on gateways) and Port its fabric-side end.
	Dev  string `json:"dev"`
	Port string `json:"port"`
	// WANPort is a gateway's uplink port in the fabric (its wan0's peer).
	WANPort string `json:"wanPort,omitempty"`
	Bridge  string `json:"bridge"`
	Prefix  int    `json:"prefix"`
	// Via is the next hop of the default route.
	Via     string                 `json:"via,omitempty"`
	Profile *scenarios.LinkProfile `json:"profile,omitempty"`
}

type site struct {
	Name   string `json:"name"`
	LAN    string `json:"lan"`
	Bridge string `json:"bridge"`
	// NoControlPlane: the spec said controlPlane: none.
	NoControlPlane bool `json:"noControlPlane,omitempty"`
}

// Fleet is an embedded fleet that is up.
type Fleet struct {
	FleetName string `json:"name"`
	// Clusters are the sites' control planes, by site, when the fleet has
	// them.
	Clusters map[string]*SiteCluster `json:"clusters,omitempty"`
	Created  time.Time               `json:"created"`
	Ready    bool                    `json:"ready"`
	Fabric   string                  `json:"fabric"`
	Sites    []site                  `json:"sites"`
	All      []member                `json:"members"`
	// Readdressed counts the uplink addresses ChangeAddress gave out.
	Readdressed int `json:"readdressed,omitempty"`
	p           *Provider
	addrMu      sync.Mutex // one ChangeAddress at a time (it saves the state)
}

// Name is the fleet's name.
func (f *Fleet) Name() string { return f.FleetName }

// Members lists the cloud, the gateways and the nodes.
func (f *Fleet) Members() []clusters.Member {
	out := make([]clusters.Member, len(f.All))
	for i, m := range f.All {
		out[i] = m.Member.Member
	}
	return out
}

func (f *Fleet) find(name string) (*member, error) {
	for i := range f.All {
		if f.All[i].Name == name || f.All[i].Namespace == name {
			return &f.All[i], nil
		}
	}
	var names []string
	for _, m := range f.All {
		names = append(names, m.Name)
	}
	return nil, fmt.Errorf("fleet %q has no node or gateway %q (it has: %s)", f.FleetName, name, strings.Join(names, ", "))
}

// Member finds a member by name or namespace name.
func (f *Fleet) Member(name string) (clusters.Member, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Member{}, err
	}
	return m.Member.Member, nil
}

func (f *Fleet) namespaces() []string {
	var out []string
	for _, m := range f.All {
		out = append(out, m.Namespace)
	}
	return out
}

// Target is the link edgefault shapes for a member: a gateway's uplink
// (its WAN leg: the whole building or site behind it) or a node's LAN
// link (that node alone).
func (f *Fleet) Target(name string) (shaper.Target, error) {
	m, err := f.find(name)
	if err != nil {
		return shaper.Target{}, err
	}
	switch m.Role {
	case clusters.RoleGateway:
		return shaper.Target{Link: shaper.Link{Netns: m.Namespace, Name: "wan0"}, Peer: &shaper.Link{Netns: f.Fabric, Name: m.WANPort}}, nil
	case clusters.RoleNode:
		return shaper.Target{Link: shaper.Link{Netns: m.Namespace, Name: m.Dev}, Peer: &shaper.Link{Netns: f.Fabric, Name: m.Port}}, nil
	}
	return shaper.Target{}, fmt.Errorf("%s is the cloud: shape the uplink of a gateway or the link of a node instead", name)
}

// Shaper returns a shaper that records into the fleet's ledger. Close it
// when done: it keeps namespaces open.
func (f *Fleet) Shaper(opts ...shaper.Option) (*shaper.Shaper, error) {
	o := []shaper.Option{shaper.WithLedger(f.p.ledger, f.FleetName), shaper.WithLogger(f.p.log)}
	if f.p.helper != "" {
		o = append(o, shaper.WithHelper(f.p.helper))
	}
	o = append(o, f.p.shaperOpts...)
	return shaper.New(append(o, opts...)...)
}

func (p *Provider) statePath(name string) string { return filepath.Join(p.stateDir, name+".json") }

// ValidateName checks a fleet name (clusters.ValidateFleetName).
func ValidateName(name string) error { return clusters.ValidateFleetName(name) }

// Get loads a fleet that is up.
func (p *Provider) Get(ctx context.Context, name string) (clusters.Fleet, error) { return p.Load(name) }

// Load loads a fleet that is up, as its concrete type.
func (p *Provider) Load(name string) (*Fleet, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fleet %q is not up (see `edgefault fleet list`; start it with `edgefault fleet up --fleet %s`)", name, name)
	}
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fleet %q state %s is corrupt: %w; `edgefault cleanup --fleet %s` removes the fleet", name, p.statePath(name), err, name)
	}
	if !f.Ready {
		return nil, fmt.Errorf("fleet %q did not finish coming up; run `edgefault cleanup --fleet %s`", name, name)
	}
	f.p = p
	return &f, nil
}

// List names the fleets with state on this machine.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(p.stateDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	sort.Strings(out)
	return out, nil
}

func (f *Fleet) save() error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	path := f.p.statePath(f.FleetName)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("write fleet state: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

// errBusy: another process holds a fleet's lock.
var errBusy = memberpkg.ErrBusy

// lock takes fleet name's lock (a file beside its state), failing at once
// (errBusy) if another process holds it.
func (p *Provider) lock(name string) (unlock func(), err error) {
	return memberpkg.LockFleet(p.ledger, name)
}
