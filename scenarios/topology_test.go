package scenarios

import (
	"strings"
	"testing"
)

func TestDefaultFleetIsValid(t *testing.T) {
	f := Default()
	if len(f.Spec.Sites) != 3 || f.Spec.Sites[2].Buildings[1].Gateway.Name != "factory-gw-b" {
		t.Fatalf("unexpected default fleet: %+v", f.Spec)
	}
}

func TestParseFleetErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown field", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
    colour: red
`, "t.yaml:7: field colour not found"},
		{"bad unit", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway:
      name: gw
      uplink: {rate: 5mbps}
`, `t.yaml:8: spec.sites[0].gateway.uplink.rate: rate "5mbps": unit "mbps" is ambiguous`},
		{"duplicate", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
    nodes: [a, b, a]
`, `t.yaml:7: spec.sites[0].nodes[2].name: name "a" is already used by spec.sites[0].nodes[0].name`},
		{"reserved", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: cloud}
`, `reserved`},
		{"no gateway", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    nodes: [a]
`, `needs a gateway`},
		{"control plane", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    controlPlane: lean
    gateway: {name: gw}
    nodes: [a]
`, `controlPlane "lean": use none`},
		{"wrong kind", `apiVersion: edgefault.io/v1alpha1
kind: Flet
spec: {}
`, `t.yaml:2: kind: kind "Flet": expected Fleet`},
		{"wrong version", `apiVersion: v1
kind: Fleet
`, `apiVersion "v1"`},
		{"empty", ``, `empty document`},
		{"unknown node field", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
    nodes:
    - name: a
      speed: 5mbit
`, `t.yaml:8: field speed not found`},
		{"count without placeholder", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: store
    count: 3
    gateway: {name: store-$n-gw}
`, `t.yaml:5: spec.sites[0].name: "store": a counted site's names hold $n`},
		{"count node without placeholder", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
  - name: store-$n
    count: 2
    gateway: {name: store-$n-gw}
    nodes: [pos]
`, `spec.sites[1].nodes[0].name: "pos": a counted site's node names hold $n`},
		{"placeholder without count", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: store-$n
    gateway: {name: gw}
`, `t.yaml:5: spec.sites[0].name: site name "store-$n" holds $n: give the site a count`},
		{"count too large", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: store-$n
    count: 100000
    gateway: {name: store-$n-gw}
`, `t.yaml:6: spec.sites[0].count: count 100000: use 1 to 1000`},
		{"count clashes", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: a-$n
    count: 2
    gateway: {name: a-$n-gw}
  - name: b
    gateway: {name: a-2-gw}
`, `spec.sites[1].gateway.name: name "a-2-gw" is already used by spec.sites[0].gateway.name`},
		{"negative loss", `apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
    nodes:
    - name: a
      link: {loss: "-3%"}
`, `out of range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFleet("t.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNodeCountNames(t *testing.T) {
	f, err := ParseFleet("t.yaml", []byte(`apiVersion: edgefault.io/v1alpha1
kind: Fleet
spec:
  sites:
  - name: s
    gateway: {name: gw}
    nodeCount: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Spec.Sites[0].NodeCount != 3 {
		t.Fatal("nodeCount lost")
	}
}

// A counted site becomes Count sites, numbered in every name, and a
// pattern group picks their gateways.
func TestCountedSites(t *testing.T) {
	sc, err := ParseScenario("t.yaml", []byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: region}
spec:
  topology:
    sites:
    - name: east-$n
      count: 3
      controlPlane: none
      gateway: {name: east-$n-router, uplink: {rate: 20mbit}}
      nodes: [east-$n-pos]
      nodeCount: 1
    - name: west-1
      gateway: {name: west-1-router}
      nodes: [west-1-pos]
  groups:
    east-routers: {sites: ["east-*"], role: gateway}
    pos: {members: ["*-pos"]}
  runtime:
    gate: {minDownload: 2mbit}
  timeline:
  - {at: 1m, group: east-routers, outage: true, for: 1m}
  duration: 3m
  expect:
  - {validator: no-restart-loops}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range sc.Spec.Topology.Sites {
		names = append(names, st.Name)
		if strings.HasPrefix(st.Name, "east-") && (st.ControlPlane != ControlPlaneNone || st.Gateway.Uplink == nil || st.Gateway.Uplink.Rate != SameRate("20mbit")) {
			t.Errorf("site %s lost the template's settings: %+v", st.Name, st)
		}
	}
	if got := strings.Join(names, ","); got != "east-1,east-2,east-3,west-1" {
		t.Fatalf("sites = %s", got)
	}
	ms := sc.Spec.Topology.Members()
	if len(ms) != 4*2+3 {
		t.Fatalf("%d members, want 11 (4 gateways, 4 pos, 3 counted nodes)", len(ms))
	}
	for group, want := range map[string]string{
		"east-routers": "east-1-router,east-2-router,east-3-router",
		"pos":          "east-1-pos,east-2-pos,east-3-pos,west-1-pos",
		"east-2":       "east-2-pos,east-2-n1",
	} {
		got, err := sc.Spec.Resolve(group)
		if err != nil {
			t.Fatal(err)
		}
		var gn []string
		for _, m := range got {
			gn = append(gn, m.Name)
		}
		if strings.Join(gn, ",") != want {
			t.Errorf("group %s = %v, want %s", group, gn, want)
		}
	}
	// Validating again (the harness does) changes nothing.
	if err := sc.Spec.Topology.Validate("spec.topology"); err != nil || len(sc.Spec.Topology.Sites) != 4 {
		t.Fatalf("second validation: %v, %d sites", err, len(sc.Spec.Topology.Sites))
	}
	if _, err := ParseScenario("t.yaml", []byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: region}
spec:
  topology:
    sites:
    - {name: s, gateway: {name: gw}, nodes: [a]}
  groups:
    g: {sites: ["north-*"]}
  runtime:
    gate: {minDownload: 2mbit}
  timeline: []
  duration: 1m
  expect:
  - {validator: no-restart-loops}
`)); err == nil || !strings.Contains(err.Error(), `no site "north-*"`) {
		t.Fatalf("a pattern matching no site: %v", err)
	}
}
