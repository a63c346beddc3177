package validators

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edgefault/edgefault/scenarios"
)

// spec is a validator with what a scenario may say to it.
type spec struct {
	v Validator
	// params it takes besides group: "within", "max", "minShare".
	params []string
	// whole: it judges the whole run and takes no group.
	whole bool
	// kube: it reads the sites' Kubernetes API (the provider must start
	// control planes).
	kube bool
	// check checks what the expectation says beyond the parameters'
	// presence (at: its path in the file).
	check func(sc *scenarios.Scenario, x scenarios.Expectation, at string) error
}

// registry is every validator, by the name scenario files use. Adding a
// validator is its file and one line here.
func registry() map[string]spec {
	return map[string]spec{
		"gate-follows-link":      {v: GateFollowsLink{}, params: []string{"within"}},
		"no-fetch-while-closed":  {v: NoFetchWhileClosed{}},
		"local-service-answers":  {v: LocalServiceAnswers{}, params: []string{"minShare"}},
		"delivered-exactly-once": {v: DeliveredExactlyOnce{}, params: []string{"within"}},
		"node-tagged":            {v: NodeTagged{}, params: []string{"within"}, kube: true},
		"routes-switched":        {v: RoutesSwitched{}, params: []string{"within"}},
		"no-restart-loops":       {v: NoRestartLoops{}, params: []string{"max"}, whole: true},
		// keeps-running is no-restart-loops by the name a user of apps
		// looks for: the runtime, workloads and cloud workloads alike.
		"keeps-running":    {v: NoRestartLoops{}, params: []string{"max"}, whole: true},
		"delivered":        {v: Delivered{}, params: []string{"within", "max", "ordered"}},
		"endpoint-answers": {v: EndpointAnswers{}, params: []string{"workload", "from", "http", "minShare", "maxLatency"}, check: checkEndpoint},
		"metric":           {v: Metric{}, params: []string{"workload", "http", "metric", "phase", "within"}, check: checkMetric},
		// The cloud's sink kept to its ingest rate (runtime.sink).
		"sink-within-limit": {v: SinkWithinLimit{}, whole: true},
	}
}

// Lookup finds a validator by the name scenario files use.
func Lookup(name string) (Validator, bool) {
	s, ok := registry()[name]
	return s.v, ok
}

// Names lists the validators, sorted.
func Names() []string {
	var out []string
	for n := range registry() {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// NeedsKube says whether the validator reads the sites' Kubernetes API.
func NeedsKube(name string) bool { return registry()[name].kube }

// Check checks a scenario's expectations against the validators: each
// names one that exists, gives only the parameters it takes and a group
// where it judges one. Errors carry the scenario file's line.
func Check(sc *scenarios.Scenario) error {
	reg := registry()
	for i, x := range sc.Spec.Expect {
		at := fmt.Sprintf("spec.expect[%d]", i)
		s, ok := reg[x.Validator]
		if !ok {
			return sc.Errorf(at+".validator", "unknown validator %q: use one of %s", x.Validator, strings.Join(Names(), ", "))
		}
		for p, set := range map[string]bool{"within": x.Within != 0, "max": x.Max != nil, "minShare": x.MinShare != "", "ordered": x.Ordered,
			"workload": x.Workload != "", "from": x.From != "", "http": x.HTTP != "", "maxLatency": x.MaxLatency != 0, "metric": x.Metric != "", "phase": x.Phase != ""} {
			if set && !slices.Contains(s.params, p) {
				return sc.Errorf(at+"."+p, "validator %s does not take %s", x.Validator, p)
			}
		}
		switch {
		case s.whole && x.Group != "":
			return sc.Errorf(at+".group", "validator %s judges the whole run: give it no group", x.Validator)
		case !s.whole && x.Group == "":
			return sc.Errorf(at+".group", "validator %s needs a group", x.Validator)
		}
		if s.check != nil {
			if err := s.check(sc, x, at); err != nil {
				return err
			}
		}
	}
	return nil
}
