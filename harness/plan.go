package harness

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// PlanStep is one thing a scenario does to one member, as a dry run
// lists it before anything is touched.
type PlanStep struct {
	// At is when, on the scenario's own clock (before any time scale);
	// For is how long it holds (0: until changed).
	At, For time.Duration
	Member  string
	Role    string
	// Kind is the step's kind (link for the topology's own links).
	Kind string
	What string
}

// Plan lists what sc does to each member, in time order: the topology's
// own links at 0, then the timeline's steps, one line per member.
func Plan(sc *scenarios.Scenario) ([]PlanStep, error) {
	var out []PlanStep
	for _, m := range sc.Spec.Topology.Members() {
		if m.Link == nil {
			continue
		}
		imp, err := m.Link.Impairment(m.Name)
		if err != nil {
			return nil, fmt.Errorf("member %s's link: %w", m.Name, err)
		}
		if imp.IsZero() {
			continue
		}
		out = append(out, PlanStep{Member: m.Name, Role: m.Role, Kind: "link", What: "the topology's link: " + imp.String()})
	}
	for _, st := range sc.Spec.Timeline {
		ms, err := sc.Spec.StepMembers(st)
		if err != nil {
			return nil, err
		}
		act := sc.Spec.Action(st)
		for _, m := range ms {
			if m.Role == clusters.RoleCloud {
				continue
			}
			out = append(out, PlanStep{At: st.At.D(), For: st.For.D(), Member: m.Name, Role: m.Role, Kind: act.Kind, What: act.What})
		}
	}
	return out, nil
}
