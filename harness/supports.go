package harness

import (
	"fmt"

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
		for _, m := range ms {
			shapes := act.Process == ""
			switch {
			case shapes && m.Role == clusters.RoleNode && !info.NodeLinks:
				return fmt.Errorf("scenario %s: the timeline impairs node %s's own link, but provider %s cannot impair a node's own link: impair its gateway's uplink instead, or use a provider with per-node links (netns)", name, m.Name, info.Name)
			case m.Role == clusters.RoleGateway && !info.Gateways:
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
		case w.Image != "" && !info.Images:
			return fmt.Errorf("scenario %s: workload %q runs image %s, but provider %s runs commands, not images: give it a command instead, or use a provider that runs images (kind)", name, w.Name, w.Image, info.Name)
		case w.Image == "" && !info.Commands:
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
