package harness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/internal/nameserver"
	"github.com/edgefault/edgefault/scenarios"
)

// CloudHostName is the name the runtime reaches the cloud by when a
// scenario's timeline has dns steps (.test is reserved for testing: it
// never leaks to a real resolver as someone's domain).
const CloudHostName = "cloud.edgefault.test"

// usesDNS says whether the timeline has dns steps.
func (r *run) usesDNS() bool {
	for _, st := range r.sc.Spec.Timeline {
		if st.DNS != nil {
			return true
		}
	}
	return false
}

// startNameServer serves CloudHostName on the cloud's port 53, when the
// timeline has dns steps; the runtime then reaches the cloud by that name
// (cloudURLs) and resolves it there.
func (r *run) startNameServer(ctx context.Context) (stop func(), err error) {
	if !r.usesDNS() {
		return func() {}, nil
	}
	cloud, err := r.f.Member(clusters.CloudName)
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(cloud.Address)
	if err != nil {
		return nil, fmt.Errorf("the cloud's address %q: %w", cloud.Address, err)
	}
	host, err := r.f.Host(cloud.Name)
	if err != nil {
		return nil, err
	}
	pc, err := host.ListenPacket("udp4", net.JoinHostPort(cloud.Address, "53"))
	if err != nil {
		return nil, fmt.Errorf("the fleet's name server on the cloud's port 53: %w", err)
	}
	ns, err := nameserver.Serve(pc, map[string]netip.Addr{CloudHostName: addr})
	if err != nil {
		pc.Close()
		return nil, err
	}
	r.dns, r.dnsAt = ns, net.JoinHostPort(cloud.Address, "53")
	r.log.Info("the runtime reaches the cloud by name", "name", CloudHostName, "nameserver", r.dnsAt)
	return func() {
		c := ns.Counts()
		r.log.Info("name server stopped", "answered", c.Answered, "failed", c.Failed, "delayed", c.Delayed, "refused", c.Refused, "dropped", c.Dropped)
		ns.Close()
	}, nil
}

// cloudURLs are the speed-test server's and the sink's URLs as the
// runtime dials them, and its flags for resolving them.
func (r *run) cloudURLs() (speed, sink string, flags []string) {
	if r.dns == nil {
		return r.cloud.SpeedURL, r.cloud.SinkURL, nil
	}
	flags = []string{"--dns=" + r.dnsAt}
	if r.sc.Spec.Runtime.DNS.NoStale {
		flags = append(flags, "--dns-stale=false")
	}
	return "http://" + net.JoinHostPort(CloudHostName, strconv.Itoa(r.cloud.SpeedPort)), "http://" + net.JoinHostPort(CloudHostName, strconv.Itoa(r.cloud.SinkPort)), flags
}

// dnsStep makes the name server fail or delay the lookups of the
// gateways' sites (it sees them from each gateway's uplink address), or,
// as the step's own restore, answer them again.
func (r *run) dnsStep(ctx context.Context, a action, ms []scenarios.Member, fault scenarios.DNSFault) error {
	if r.dns == nil {
		return fmt.Errorf("no name server runs (the timeline has no dns step?)")
	}
	what := fault.String()
	if a.undo {
		what = "DNS answers again"
	}
	r.logStep(a.step, what)
	for _, m := range ms {
		if a.undo {
			// Its own fault only: a later dns step on the gateway has
			// replaced it.
			r.mu.Lock()
			cur, ok := r.dnsFaults[m.Name]
			r.mu.Unlock()
			if !ok || cur.step != a.idx {
				continue
			}
			if err := r.setDNS(m.Name, nil, 0); err != nil {
				return err
			}
			r.ev.emit(m.Name, "timeline", "dns-restored")
			continue
		}
		if err := r.setDNS(m.Name, &fault, a.idx); err != nil {
			return err
		}
		r.ev.emit(m.Name, "timeline", "dns-fault", "what", what, "note", a.step.Note)
	}
	return nil
}

// setDNS gives gateway's uplink address the fault (nil: none) of the
// timeline's step.
func (r *run) setDNS(gateway string, fault *scenarios.DNSFault, step int) error {
	m, err := r.f.Member(gateway)
	if err != nil {
		return err
	}
	addr, err := netip.ParseAddr(m.WANAddress)
	if err != nil {
		return fmt.Errorf("%s's uplink address %q: %w", gateway, m.WANAddress, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.dnsFaults[gateway]; ok {
		r.dns.Set(old.addr, nameserver.Rule{})
		delete(r.dnsFaults, gateway)
	}
	if fault == nil {
		return nil
	}
	rule := nameserver.Rule{Fail: fault.Fail, Delay: fault.Delay.D()}
	r.dns.Set(addr, rule)
	r.dnsFaults[gateway] = dnsFault{addr: addr, fault: *fault, step: step}
	return nil
}

// dnsFault is a fault in force on a gateway's site, and the address the
// name server knows it by.
type dnsFault struct {
	addr  netip.Addr
	fault scenarios.DNSFault
	step  int
}

// dnsFollows moves gateway's fault to its new uplink address.
func (r *run) dnsFollows(gateway string) error {
	r.mu.Lock()
	f, ok := r.dnsFaults[gateway]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	return r.setDNS(gateway, &f.fault, f.step)
}

// restoreDNS ends what is still in force when the timeline ends.
func (r *run) restoreDNS(ctx context.Context) error {
	gws := faulted(r, r.dnsFaults)
	if len(gws) == 0 {
		return nil
	}
	r.log.Info("DNS answers again at the end of the timeline", "gateways", gws)
	for _, g := range gws {
		if err := r.setDNS(g, nil, 0); err != nil {
			return err
		}
		r.ev.emit(g, "timeline", "dns-restored")
	}
	return nil
}
