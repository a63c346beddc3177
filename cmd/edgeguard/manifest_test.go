package main

import (
	"strings"
	"testing"

	"github.com/edgefault/edgefault/deploy"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Every edgeguard command line in deploy/ parses with this binary's flags
// and, for the gate, makes a valid configuration: the manifests and the
// binary cannot drift apart unnoticed.
func TestManifestArgsParse(t *testing.T) {
	objs, err := deploy.Objects()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds); err != nil {
			t.Fatal(err)
		}
		spec := ds.Spec.Template.Spec
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			n++
			root := newRoot()
			cmd, rest, err := root.Find(c.Args)
			if err != nil || cmd == root {
				t.Errorf("%s: args %v name no edgeguard command: %v", c.Name, c.Args, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: %v: %v", c.Name, c.Args, err)
				continue
			}
			if cmd.Name() == "serve" {
				// The gate flags make a valid configuration.
				var gf gateFlags
				fs := cmd.Flags()
				gf.server, _ = fs.GetString("server")
				gf.minDown, _ = fs.GetString("min-download")
				gf.hysteresis, _ = fs.GetString("hysteresis")
				gf.budget, _ = fs.GetString("probe-budget")
				gf.maxLatency, _ = fs.GetDuration("max-latency")
				gf.interval, _ = fs.GetDuration("interval")
				gf.window, _ = fs.GetDuration("probe-window")
				gf.full, _ = fs.GetDuration("full-duration")
				gf.confirm, _ = fs.GetDuration("confirm-duration")
				if _, err := gf.config(&globals{}); err != nil {
					t.Errorf("%s: serve flags %v: %v", c.Name, c.Args, err)
				}
				if l, _ := fs.GetString("listen"); !strings.HasSuffix(l, ":8474") {
					t.Errorf("serve listens on %q; the probes use 8474", l)
				}
			}
		}
	}
	if n < 2 {
		t.Fatalf("found %d edgeguard containers in deploy/, want the gate and the workload", n)
	}
}
