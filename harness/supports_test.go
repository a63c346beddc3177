package harness

import (
	"strings"
	"testing"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// A scenario a provider cannot model is refused with the reason and a
// provider that can; one it can is not.
func TestSupports(t *testing.T) {
	full := clusters.Info{Name: "full", Commands: true, Gateways: true, GatewayRuntime: true, NodeLinks: true, ControlPlanes: true, SiteControlPlanes: true}
	// none says controlPlane: none for the scenario's first site.
	none := func(sc *scenarios.Scenario) { sc.Spec.Topology.Sites[0].ControlPlane = scenarios.ControlPlaneNone }
	load := func(name string, change func(*scenarios.Scenario)) *scenarios.Scenario {
		sc, err := scenarios.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if change != nil {
			change(sc)
		}
		return sc
	}
	for _, tc := range []struct {
		name   string
		sc     *scenarios.Scenario
		change func(*clusters.Info)
		want   string // "" accepts
	}{
		{"everything on a full provider", load("factory", nil), nil, ""},
		{"vehicle on a full provider", load("vehicle", nil), nil, ""},
		{"gateways", load("factory", nil), func(i *clusters.Info) { i.Gateways = false }, "has no gateway members"},
		{"control planes for failover", load("factory", nil), func(i *clusters.Info) { i.ControlPlanes = false }, "starts no control planes"},
		{"control planes for node-tagged", load("factory", func(sc *scenarios.Scenario) { sc.Spec.Runtime.Failover.Enabled = false }),
			func(i *clusters.Info) { i.ControlPlanes = false }, "validator node-tagged reads the site's Kubernetes API"},
		{"node links", load("vehicle", func(sc *scenarios.Scenario) { sc.Spec.Timeline[0].Group = "truck-ecu" }),
			func(i *clusters.Info) { i.NodeLinks = false }, "cannot impair a node's own link"},
		{"failover without gateways", load("vehicle", func(sc *scenarios.Scenario) { sc.Spec.Runtime.Failover.Enabled = true; sc.Spec.Timeline = nil }),
			func(i *clusters.Info) { i.Gateways = false }, "turn failover off"},
		{"failover with router-only gateways", load("factory", nil), func(i *clusters.Info) { i.GatewayRuntime = false }, "gateways are routers, not Nodes"},
		{"vehicle and retail with router-only gateways", load("retail", nil), func(i *clusters.Info) { i.GatewayRuntime = false }, ""},
		{"a store's customers without gateways", load("retail", func(sc *scenarios.Scenario) { sc.Spec.Timeline = nil }),
			func(i *clusters.Info) { i.Gateways = false }, "call from the site's gateway"},
		{"a name that is not a folder's", load("vehicle", func(sc *scenarios.Scenario) { sc.Metadata.Name = "../../etc" }), nil, "scenario name"},
		{"images", load("vehicle", func(sc *scenarios.Scenario) { sc.Spec.Workloads[0].Image = "example/agent:1" }), nil, "runs commands, not images"},
		{"built-in workloads where only images run", load("vehicle", nil), func(i *clusters.Info) { i.Commands = false; i.Images = true }, ""},
		{"built-in workloads where only edgefault's pods run", load("vehicle", nil), func(i *clusters.Info) { i.Commands, i.Images, i.Pods = false, false, true }, ""},
		{"an app where only edgefault's pods run", load("vehicle", func(sc *scenarios.Scenario) {
			sc.Spec.Workloads = append(sc.Spec.Workloads, scenarios.Workload{Name: "app", Type: scenarios.WorkloadCommand, On: "truck", Image: "example/agent:1", Command: []string{"/agent"}})
		}), func(i *clusters.Info) { i.Commands, i.Images, i.Pods = false, false, true }, "runs only edgefault's own workloads"},
		{"commands", load("vehicle", func(sc *scenarios.Scenario) {
			sc.Spec.Workloads = append(sc.Spec.Workloads, scenarios.Workload{Name: "app", Type: scenarios.WorkloadCommand, On: "truck", Command: []string{"/usr/bin/app"}})
		}), func(i *clusters.Info) { i.Commands = false; i.Images = true }, "runs only images"},
		{"runtime on a gateway without failover", load("factory", func(sc *scenarios.Scenario) {
			sc.Spec.Runtime.Failover.Enabled = false
			sc.Spec.Expect = sc.Spec.Expect[:1]
			sc.Spec.Timeline = append(sc.Spec.Timeline, scenarios.Step{At: sc.Spec.Timeline[0].At, Group: "factory-gw-a", Kill: "runtime"})
		}), nil, "runs none with failover off"},
		{"a site without a control plane", load("retail", none), nil, ""},
		{"failover on a site without a control plane", load("factory", none), nil, "controlPlane: none, but failover marks Nodes"},
		{"node-tagged on a site without a control plane", load("factory", func(sc *scenarios.Scenario) { none(sc); sc.Spec.Runtime.Failover.Enabled = false }),
			nil, "validator node-tagged reads the site's Kubernetes API, but site factory has controlPlane: none"},
		{"a site without a control plane where sites share one", load("retail", none), func(i *clusters.Info) { i.SiteControlPlanes = false }, "the sites share one cluster"},
		{"a validator that does not exist", load("vehicle", func(sc *scenarios.Scenario) { sc.Spec.Expect[0].Validator = "fine" }), nil, `unknown validator "fine"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := full
			if tc.change != nil {
				tc.change(&info)
			}
			err := Supports(info, tc.sc)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want %q", err, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), "validator") && !strings.Contains(err.Error(), "failover off") && !strings.Contains(err.Error(), "scenario name") && !strings.Contains(err.Error(), "provider full"):
				t.Errorf("%v does not name the provider", err)
			}
		})
	}
}

// The ports the scenario format refuses are the ones the harness's own
// servers take.
func TestReservedPorts(t *testing.T) {
	for _, p := range []int{SpeedPort, ContentPort, SinkPort, GatePort, PayPort} {
		if _, ok := scenarios.ReservedPorts[p]; !ok {
			t.Errorf("port %d is the harness's but scenarios.ReservedPorts lets a workload take it", p)
		}
	}
	if len(scenarios.ReservedPorts) != 5 {
		t.Errorf("scenarios.ReservedPorts has %d ports, the harness takes 5", len(scenarios.ReservedPorts))
	}
}

// An outage over before the gate can notice it, at the scale it is
// played, is refused before anything starts, with the largest scale that
// works; played slower, it is accepted.
func TestCheckTiming(t *testing.T) {
	sc, err := scenarios.ParseScenario("turbines.yaml", []byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: turbines}
spec:
  timeScale: 60
  topology:
    sites:
    - name: farm
      gateway: {name: sat, uplink: {rate: 10mbit, delay: 300ms}}
      nodes: [t1, t2, t3]
  runtime:
    gate: {minDownload: 1mbit, interval: 2s}
  timeline:
  - {at: 10m, group: sat, outage: true, for: 30m}
  - {at: 50m, group: sat, outage: true}
  - {at: 53m, group: sat, restore: true}
  duration: 1h
  expect:
  - {validator: gate-follows-link, group: farm}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckTiming(sc, sc.Scale(0))
	for _, want := range []string{"the outage of sat at 50m0s for 3m0s", "lasts 3s of real time at time scale 60", "about 3.5s: two probes 1s apart", "run at time scale 51 or less"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckTiming at 60 = %v, want %q", err, want)
		}
	}
	if err := CheckTiming(sc, 51); err != nil {
		t.Errorf("at the scale it proposes: %v", err)
	}
	// Nothing judges the gate: nothing to refuse.
	sc.Spec.Expect = []scenarios.Expectation{{Validator: "no-restart-loops"}}
	if err := CheckTiming(sc, 60); err != nil {
		t.Errorf("without gate-follows-link: %v", err)
	}
	// The harness's probes are not scaled: an app's endpoint judged per
	// outage needs a few seconds of it.
	sc.Spec.Expect = []scenarios.Expectation{{Validator: "endpoint-answers", Group: "farm"}}
	if err := CheckTiming(sc, 90); err == nil || !strings.Contains(err.Error(), "endpoint-answers needs to probe it") {
		t.Errorf("endpoint-answers at 90: %v", err)
	}
	if err := CheckTiming(sc, 60); err != nil {
		t.Errorf("endpoint-answers at 60: %v", err)
	}
}

// The faults beyond the link need a provider that gives nodes disks and
// uplinks new addresses; the example that plays them checks at its own
// time scale, and its drive (a row a second) is refused faster than 4.
func TestFieldFaults(t *testing.T) {
	sc, err := scenarios.Builtin("field-faults")
	if err != nil {
		t.Fatal(err)
	}
	netns := clusters.Info{Name: "netns", Commands: true, Gateways: true, GatewayRuntime: true, NodeLinks: true, SiteControlPlanes: true, Disks: true, Readdress: true, NameServer: true}
	if err := Supports(netns, sc); err != nil {
		t.Fatalf("netns: %v", err)
	}
	if err := CheckTiming(sc, sc.Scale(0)); err != nil {
		t.Fatalf("at its own time scale: %v", err)
	}
	if err := CheckTiming(sc, 10); err == nil || !strings.Contains(err.Error(), "play it at time scale 4 or lower") {
		t.Fatalf("at time scale 10: %v", err)
	}
	kind := netns
	kind.Name, kind.Disks, kind.Readdress, kind.NameServer = "kind", false, false, false
	if err := Supports(kind, sc); err == nil || !strings.Contains(err.Error(), "cannot give a node a disk of its own") {
		t.Fatalf("kind: %v", err)
	}
	// Its dns step alone is refused too.
	var dnsOnly []scenarios.Step
	for _, st := range sc.Spec.Timeline {
		if st.DNS != nil {
			dnsOnly = append(dnsOnly, st)
		}
	}
	if len(dnsOnly) != 1 {
		t.Fatalf("field-faults has %d dns steps, want 1", len(dnsOnly))
	}
	sc.Spec.Timeline = dnsOnly
	if err := Supports(kind, sc); err == nil || !strings.Contains(err.Error(), "cannot tell a site's lookups apart") {
		t.Fatalf("kind, dns only: %v", err)
	}
	if err := Supports(netns, sc); err != nil {
		t.Fatalf("netns, dns only: %v", err)
	}
}
