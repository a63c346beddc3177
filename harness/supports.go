package harness

import (
	"fmt"
	"math"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// Supports says whether a provider with info can model sc, and whether sc
// asks its validators only what they do, before anything starts; the
// error says why not and what would.
func Supports(info clusters.Info, sc *scenarios.Scenario) error {
	if err := validators.Check(sc); err != nil {
		return err
	}
	name := sc.Metadata.Name
	if !info.Commands && !info.Images && !info.Pods {
		return fmt.Errorf("scenario %s: provider %s cannot run the runtime or workloads yet, only impair links: 'edgefault run --provider %s --dry-run' lists what the scenario would impair", name, info.Name, info.Name)
	}
	// It names the report's folder, which the run empties: a scenario
	// built in code has not been through the loader's check.
	if err := scenarios.ValidateName(name); err != nil {
		return err
	}
	for _, st := range sc.Spec.Timeline {
		ms, err := sc.Spec.StepMembers(st)
		if err != nil {
			return err
		}
		act := sc.Spec.Action(st)
		if act.Disk && !info.Disks {
			return fmt.Errorf("scenario %s: the timeline fills a node's disk, but provider %s cannot give a node a disk of its own: use the embedded fleet (netns)", name, info.Name)
		}
		if act.Power && !info.Disks {
			return fmt.Errorf("scenario %s: the timeline cuts a node's power, but provider %s cannot give a node a disk of its own to lose the unsynced tail of: use the embedded fleet (netns)", name, info.Name)
		}
		if act.DNS != nil && !info.NameServer {
			return fmt.Errorf("scenario %s: the timeline makes DNS fail, but provider %s cannot tell a site's lookups apart: use the embedded fleet (netns)", name, info.Name)
		}
		if act.Readdress && !info.Readdress {
			return fmt.Errorf("scenario %s: the timeline gives an uplink a new address, but provider %s cannot: use the embedded fleet (netns)", name, info.Name)
		}
		for _, m := range ms {
			shapes := act.Process == "" && !act.Disk && !act.Readdress && !act.Power && act.DNS == nil
			switch {
			case shapes && m.Role == clusters.RoleNode && !info.NodeLinks:
				return fmt.Errorf("scenario %s: the timeline impairs node %s's own link, but provider %s cannot impair a node's own link: impair its gateway's uplink instead, or use a provider with per-node links (netns)", name, m.Name, info.Name)
			case m.Role == clusters.RoleGateway && !info.Gateways && !(shapes && info.GatewayLinks):
				return fmt.Errorf("scenario %s: the timeline acts on gateway %s, but provider %s has no gateway members: use a provider that models gateways (netns)", name, m.Name, info.Name)
			}
		}
	}
	if !info.Gateways {
		for _, s := range sc.Spec.Topology.Sites {
			if len(s.Buildings) > 0 {
				return fmt.Errorf("scenario %s: site %s has buildings (a gateway each), but provider %s has no gateway members: use a provider that models gateways (netns)", name, s.Name, info.Name)
			}
		}
		if sc.Spec.Runtime.Failover.Enabled {
			return fmt.Errorf("scenario %s: failover probes through gateways and runs the runtime on them, but provider %s has no gateway members: turn failover off, or use a provider that models gateways (netns)", name, info.Name)
		}
		for _, w := range sc.Spec.Workloads {
			if w.Type == scenarios.WorkloadServe {
				return fmt.Errorf("scenario %s: workload %q's customers call from the site's gateway, but provider %s has no gateway members: use a provider that models gateways (netns)", name, w.Name, info.Name)
			}
		}
	}
	if info.Gateways && !info.GatewayRuntime && sc.Spec.Runtime.Failover.Enabled {
		return fmt.Errorf("scenario %s: failover runs the runtime on the gateways and marks their Nodes, but provider %s's gateways are routers, not Nodes of their site: turn failover off, or use a provider whose gateways are nodes (netns)", name, info.Name)
	}
	for _, w := range sc.Spec.Workloads {
		if w.Kubeconfig && !info.ControlPlanes {
			return fmt.Errorf("scenario %s: workload %q asks for its node's kubeconfig, but provider %s starts no control planes (netns: run edgefault setup first)", name, w.Name, info.Name)
		}
	}
	if err := checkNoControlPlane(info, sc); err != nil {
		return err
	}
	if !info.ControlPlanes {
		if sc.Spec.Runtime.Failover.Enabled {
			return fmt.Errorf("scenario %s: failover marks Nodes in the site's Kubernetes API, but provider %s starts no control planes (netns: with edgefault setup done)", name, info.Name)
		}
		for _, x := range sc.Spec.Expect {
			if validators.NeedsKube(x.Validator) {
				return fmt.Errorf("scenario %s: validator %s reads the site's Kubernetes API, but provider %s starts no control planes (netns: with edgefault setup done)", name, x.Validator, info.Name)
			}
		}
	}
	for _, w := range sc.Spec.Workloads {
		switch {
		case w.Type == scenarios.WorkloadCommand && !info.Commands && !info.Images:
			return fmt.Errorf("scenario %s: workload %q is an app of yours, but provider %s runs only edgefault's own workloads (the runtime, fetch, produce) yet: certify it on kind or the embedded fleet (netns)", name, w.Name, info.Name)
		case w.Image != "" && !info.Images:
			return fmt.Errorf("scenario %s: workload %q runs image %s, but provider %s runs commands, not images: give it a command instead, or use a provider that runs images (kind)", name, w.Name, w.Image, info.Name)
		case w.Image == "" && w.Type == scenarios.WorkloadCommand && !info.Commands:
			// The built-in workloads are edgeguard's, which a provider
			// that runs images runs from the runtime's.
			return fmt.Errorf("scenario %s: workload %q is a command, but provider %s runs only images: give it an image", name, w.Name, info.Name)
		}
	}
	for _, st := range sc.Spec.Timeline {
		// The runtime's settings may have been overridden (--failover
		// off) since the file was checked.
		if sc.Spec.Action(st).Process == "runtime" {
			ms, _ := sc.Spec.Resolve(st.Group)
			for _, m := range ms {
				if m.Role == clusters.RoleGateway && !sc.Spec.Runtime.Failover.Enabled {
					return fmt.Errorf("scenario %s: the timeline stops the runtime on gateway %s, which runs none with failover off", name, m.Name)
				}
			}
		}
	}
	return nil
}

// probeDeadline is about how long the gate's probe takes to give up on a
// cut link (network time).
const probeDeadline = 1500 * time.Millisecond

// gateDetection is about how long the gate takes to notice a cut link at
// scale: two bad probes an interval apart (the interval scaled, at least
// 1 s) and a probe's deadline.
func gateDetection(g scenarios.GateSpec, scale float64) time.Duration {
	iv := g.Interval
	if iv == 0 {
		iv = scenarios.Duration(2 * time.Second)
	}
	return 2*scenarios.Scaled(iv, scale, time.Second) + probeDeadline
}

// CheckTiming refuses a scenario whose outages, at scale, are over in
// real time before the gate can notice them while gate-follows-link is
// asked to judge them: the verdict would fail for the scenario's sake,
// not the runtime's. The error names the step, its real length, the
// bound and the largest time scale that works.
func CheckTiming(sc *scenarios.Scenario, scale float64) error {
	if err := sc.Spec.CheckTraceScale(scale); err != nil {
		return err
	}
	if err := checkTiming(sc, scale, "gate-follows-link", func(s float64) (time.Duration, string) {
		if sc.Spec.Runtime.Gate.Bypassed() {
			return 0, ""
		}
		iv := sc.Spec.Runtime.Gate.Interval
		if iv == 0 {
			iv = scenarios.Duration(2 * time.Second)
		}
		return gateDetection(sc.Spec.Runtime.Gate, s), fmt.Sprintf("the gate takes to notice an outage there (about %v: two probes %v apart and a probe's deadline)", gateDetection(sc.Spec.Runtime.Gate, s), scenarios.Scaled(iv, s, time.Second))
	}); err != nil {
		return err
	}
	// The harness's own probes and scrapes are not scaled: an outage must
	// hold a few of them.
	if err := checkTiming(sc, scale, "endpoint-answers", func(float64) (time.Duration, string) {
		return 3 * time.Second, "endpoint-answers needs to probe it (3s: a few probes, each given up to 2s)"
	}); err != nil {
		return err
	}
	return checkTiming(sc, scale, "metric", func(float64) (time.Duration, string) {
		return 2 * time.Second, "metric needs to scrape it (2s: a few scrapes)"
	})
}

// checkTiming refuses outages on the members validator judges that are
// shorter, in real time at scale, than bound says (why: what needs it).
func checkTiming(sc *scenarios.Scenario, scale float64, validator string, bound func(scale float64) (time.Duration, string)) error {
	var judged []scenarios.Member
	for _, x := range sc.Spec.Expect {
		if x.Validator != validator || (validator == "metric" && x.Phase != "during") {
			continue
		}
		ms, err := sc.Spec.Resolve(x.Group)
		if err != nil {
			return err
		}
		judged = append(judged, ms...)
	}
	if b, _ := bound(scale); len(judged) == 0 || b == 0 {
		return nil
	}
	affects := func(st scenarios.Step) bool {
		ms, err := sc.Spec.StepMembers(st)
		if err != nil {
			return false
		}
		for _, m := range ms {
			for _, j := range judged {
				if j.Role == "node" && (j.Name == m.Name || j.Gateway == m.Name) {
					return true
				}
			}
		}
		return false
	}
	for i, st := range sc.Spec.Timeline {
		if !st.Outage || !affects(st) {
			continue
		}
		length := st.For
		if length == 0 {
			// Until a later step restores the same group (or the end).
			length = sc.Spec.Duration - st.At
			for _, later := range sc.Spec.Timeline[i+1:] {
				if later.Group == st.Group && later.At > st.At && (later.Restore || later.Outage || later.Link != nil || later.Profile != "") {
					length = later.At - st.At
					break
				}
			}
		}
		real := scenarios.Scaled(length, scale, 0)
		need, why := bound(scale)
		if real >= need {
			continue
		}
		works := 0
		for s := int(math.Ceil(scale)) - 1; s >= 1; s-- {
			if n, _ := bound(float64(s)); scenarios.Scaled(length, float64(s), 0) >= n {
				works = s
				break
			}
		}
		fix := "make the outage longer"
		if works > 0 {
			fix = fmt.Sprintf("run at time scale %d or less (--time-scale %d, or timeScale: %d in the file), or make the outage longer", works, works, works)
		}
		which := fmt.Sprintf("the outage of %s at %v for %v", st.Group, st.At.D(), length.D())
		if st.Note != "" {
			which += " (" + st.Note + ")"
		}
		return fmt.Errorf("scenario %s: %s lasts %v of real time at time scale %g, shorter than %s, so %s could not judge it: %s",
			sc.Metadata.Name, which, real.Round(10*time.Millisecond), scale, why, validator, fix)
	}
	return nil
}

// checkNoControlPlane refuses what needs a site's Kubernetes API on a site
// that says controlPlane: none, and the setting where sites share one
// cluster.
func checkNoControlPlane(info clusters.Info, sc *scenarios.Scenario) error {
	name := sc.Metadata.Name
	none := map[string]bool{}
	for _, st := range sc.Spec.Topology.Sites {
		if st.ControlPlane == scenarios.ControlPlaneNone {
			none[st.Name] = true
		}
	}
	if len(none) == 0 {
		return nil
	}
	if !info.SiteControlPlanes {
		return fmt.Errorf("scenario %s: controlPlane: none is for providers that give each site its own control plane (netns); provider %s has the sites share one cluster: leave it out", name, info.Name)
	}
	first := func() string {
		for _, st := range sc.Spec.Topology.Sites {
			if none[st.Name] {
				return st.Name
			}
		}
		return ""
	}
	if sc.Spec.Runtime.Failover.Enabled {
		return fmt.Errorf("scenario %s: site %s has controlPlane: none, but failover marks Nodes in the site's Kubernetes API: give the site a control plane or turn failover off", name, first())
	}
	inNone := func(group string) string {
		ms, err := sc.Spec.Resolve(group)
		if err != nil {
			return ""
		}
		for _, m := range ms {
			if none[m.Site] {
				return m.Site
			}
		}
		return ""
	}
	for _, w := range sc.Spec.Workloads {
		if w.Kubeconfig && !w.OnCloud() {
			if st := inNone(w.On); st != "" {
				return fmt.Errorf("scenario %s: workload %q asks for its node's kubeconfig, but site %s has controlPlane: none: give the site a control plane, or drop kubeconfig", name, w.Name, st)
			}
		}
	}
	for _, x := range sc.Spec.Expect {
		if validators.NeedsKube(x.Validator) {
			g := x.Group
			if g == "" {
				g = "all"
			}
			if st := inNone(g); st != "" {
				return fmt.Errorf("scenario %s: validator %s reads the site's Kubernetes API, but site %s has controlPlane: none: narrow its group, or give the site a control plane", name, x.Validator, st)
			}
		}
	}
	return nil
}
