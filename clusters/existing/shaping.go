package existing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/shaper/impair"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LinkShaper impairs members' own links, and pods, through the node
// agents. The run's Lease is renewed from its first change until Close,
// which clears what it applied; if the harness dies instead, the agents
// clear it themselves once the Lease is 15 s old.
//
// On a real node the link is also the node's path to its API server, and
// the agent's: an impairment is therefore held to the cloud's address
// (the member the scenario's traffic goes to) unless it names targets,
// and targets that hold an address the API server is reached at are
// refused.
type LinkShaper struct {
	f      *Fleet
	cs     kubernetes.Interface
	agents *Agents
	log    *slog.Logger

	mu      sync.Mutex
	closed  bool
	stop    context.CancelFunc // renewals, once started
	done    chan error
	lost    chan struct{}   // closed when renewals fail for good
	applied map[string]bool // members and pods ("pod:NS/NAME") changed
	pods    map[string]PodRef
}

var _ clusters.LinkShaper = (*LinkShaper)(nil)

// LinkShaper returns a shaper of the fleet's members' links; it touches
// the cluster only once asked to change something.
func (f *Fleet) LinkShaper(ctx context.Context) (clusters.LinkShaper, error) {
	return f.Shaper()
}

// Shaper is LinkShaper with what only this provider has (pods).
func (f *Fleet) Shaper() (*LinkShaper, error) {
	cs, err := f.Cluster.client()
	if err != nil {
		return nil, err
	}
	return &LinkShaper{f: f, cs: cs, agents: NewAgents(cs, f.Token), log: f.p.log,
		applied: map[string]bool{}, pods: map[string]PodRef{}, lost: make(chan struct{})}, nil
}

// Lost is closed when the run's Lease could not be renewed for 10 s: the
// agents are about to clear what was applied, and a run must stop.
func (l *LinkShaper) Lost() <-chan struct{} { return l.lost }

// Agents is the client of the fleet's agents.
func (l *LinkShaper) Agents() *Agents { return l.agents }

// live starts renewing the run's Lease (once) and waits until the agents
// on nodes see the run live.
func (l *LinkShaper) live(ctx context.Context, nodes ...string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("the shaper is closed")
	}
	if l.stop == nil {
		rctx, cancel := context.WithCancel(context.Background())
		l.stop, l.done = cancel, make(chan error, 1)
		go func() {
			err := Renew(rctx, l.cs)
			l.done <- err
			if err != nil {
				l.log.Error("the run's lease is lost: the agents clear what was applied", "err", err)
				close(l.lost)
			}
		}()
	}
	done := l.done
	l.mu.Unlock()
	select {
	case err := <-done:
		done <- err // for Close
		if err != nil {
			return err
		}
		return errors.New("the run's lease is no longer renewed")
	default:
	}
	// The agents poll every second: the first renewal is seen within it;
	// a DaemonSet just deployed may still be pulling or starting.
	return l.agents.WaitLive(ctx, nodes, 3*time.Minute)
}

// nodes are the fleet members whose links stand for member's: its own,
// or for a gateway those of the nodes behind it.
func (l *LinkShaper) nodes(member string) ([]*fleetMember, error) {
	if behind, ok := l.f.Gateways[member]; ok {
		var out []*fleetMember
		for _, n := range behind {
			m, err := l.f.find(n)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	}
	m, err := l.f.find(member)
	if err != nil {
		return nil, err
	}
	if m.Role == clusters.RoleCloud {
		return nil, fmt.Errorf("member %s is the cloud: it is never shaped (its node carries the scenario's far end)", member)
	}
	return []*fleetMember{m}, nil
}

// Apply impairs member's own link (its node's uplink), or a gateway's
// uplink as the links of the nodes behind it.
func (l *LinkShaper) Apply(ctx context.Context, member string, imp impair.Impairment) error {
	ms, err := l.nodes(member)
	if err != nil {
		return err
	}
	if imp, err = l.held(ctx, imp); err != nil {
		return fmt.Errorf("%s: %w", member, err)
	}
	var nodes []string
	for _, m := range ms {
		nodes = append(nodes, m.Node)
	}
	if err := l.live(ctx, nodes...); err != nil {
		return err
	}
	l.mark(member)
	var errs []error
	for _, n := range nodes {
		errs = append(errs, l.agents.Apply(ctx, n, imp))
	}
	return errors.Join(errs...)
}

func (l *LinkShaper) mark(key string) {
	l.mu.Lock()
	l.applied[key] = true
	l.mu.Unlock()
}

// held holds imp to the cloud's address when it names no targets, and
// refuses targets that would cut the nodes off their API server.
func (l *LinkShaper) held(ctx context.Context, imp impair.Impairment) (impair.Impairment, error) {
	if len(imp.Targets) == 0 {
		c, err := l.f.find(clusters.CloudName)
		if err != nil {
			return imp, err
		}
		a, err := netip.ParseAddr(c.Address)
		if err != nil {
			return imp, fmt.Errorf("the cloud's node %s has no internal address to hold the impairment to", c.Node)
		}
		imp.Targets = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
	}
	api, err := APIAddresses(ctx, l.cs)
	if err != nil {
		return imp, err
	}
	for _, t := range imp.Targets {
		for _, a := range api {
			if t.Contains(a) {
				return imp, fmt.Errorf("the impairment's target %s holds %s, where the nodes reach their API server: it would cut the agent off with the node (and the run with it). Put the cloud on a node that does not serve the API, or name targets that leave it out", t, a)
			}
		}
	}
	return imp, nil
}

// APIAddresses are where the nodes reach the API server: the kubernetes
// Service's cluster IP and its endpoints.
func APIAddresses(ctx context.Context, cs kubernetes.Interface) ([]netip.Addr, error) {
	var out []netip.Addr
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the API server's addresses (service default/kubernetes): %w", err)
	}
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a)
		}
	}
	eps, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return nil, fmt.Errorf("the API server's endpoints: %w", err)
	}
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			for _, ip := range e.Addresses {
				if a, err := netip.ParseAddr(ip); err == nil {
					out = append(out, a)
				}
			}
		}
	}
	return out, nil
}

// Clear clears member's own link (a gateway's: its nodes').
func (l *LinkShaper) Clear(ctx context.Context, member string) error {
	ms, err := l.nodes(member)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		errs = append(errs, l.agents.Clear(ctx, m.Node))
	}
	return errors.Join(errs...)
}

// Current is what the agent on member's node holds on its uplink (a
// gateway's: on the first node's behind it).
func (l *LinkShaper) Current(member string) (impair.Impairment, bool, error) {
	ms, err := l.nodes(member)
	if err != nil || len(ms) == 0 {
		return impair.Impairment{}, false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := l.agents.State(ctx, ms[0].Node)
	if err != nil || st.Uplink == nil {
		return impair.Impairment{}, false, err
	}
	return *st.Uplink, true, nil
}

// Backend says how impairments are applied.
func (l *LinkShaper) Backend() string {
	return "node agents (DaemonSet " + Namespace + "/" + AgentName + ") through the API server"
}

// ApplyPod impairs pod (NAMESPACE/NAME) as it sees its traffic, on the
// host side of its veth, through the agent on its node; the node must
// be one of the fleet's. The pod is named in the run's ConfigMap first.
func (l *LinkShaper) ApplyPod(ctx context.Context, pod string, imp impair.Impairment) error {
	if len(imp.Targets) > 0 {
		return fmt.Errorf("pod %s: a pod's impairment applies to all its traffic: targets are for a node's link", pod)
	}
	ref, err := LookupPod(ctx, l.cs, pod)
	if err != nil {
		return err
	}
	if !slices.Contains(l.f.shaped(), ref.Node) {
		return fmt.Errorf("pod %s is on node %s, which plays no node of fleet %s: its agent may not touch it", pod, ref.Node, l.f.FleetName)
	}
	l.mu.Lock()
	known, ok := l.pods[pod]
	l.mu.Unlock()
	if !ok || known != ref {
		if err := AllowPods(ctx, l.cs, ref); err != nil {
			return err
		}
		l.mu.Lock()
		l.pods[pod] = ref
		l.mu.Unlock()
	}
	if err := l.live(ctx, ref.Node); err != nil {
		return err
	}
	l.mark("pod:" + pod)
	// The agent reads the ConfigMap every second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.agents.ApplyPod(ctx, ref.Node, pod, ref.IP, imp)
		if err == nil || time.Now().After(deadline) || !errors.Is(err, ErrNotNamed) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// ClearPod clears pod.
func (l *LinkShaper) ClearPod(ctx context.Context, pod string) error {
	l.mu.Lock()
	ref, ok := l.pods[pod]
	l.mu.Unlock()
	if !ok {
		var err error
		if ref, err = LookupPod(ctx, l.cs, pod); err != nil {
			return err
		}
	}
	return l.agents.ClearPod(ctx, ref.Node, pod)
}

// Close clears what this shaper applied and stops renewing the run's
// Lease.
func (l *LinkShaper) Close() error {
	l.mu.Lock()
	keys := make([]string, 0, len(l.applied))
	for k := range l.applied {
		keys = append(keys, k)
	}
	stop, done := l.stop, l.done
	l.stop, l.closed = nil, true // no Apply starts renewals again
	l.mu.Unlock()
	if stop == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, k := range keys {
		var err error
		if pod, ok := strings.CutPrefix(k, "pod:"); ok {
			err = l.ClearPod(ctx, pod)
		} else {
			err = l.Clear(ctx, k)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	stop()
	if err := <-done; err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
