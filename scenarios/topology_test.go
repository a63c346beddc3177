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
