package harness

import (
	"testing"

	"github.com/edgefault/edgefault/clusters"
)

// The built-in live fleet is a valid scenario on the embedded fleet and,
// without failover's gateways, on a provider with routers for gateways.
func TestLiveFleet(t *testing.T) {
	for _, info := range []clusters.Info{
		{Name: "full", Commands: true, Gateways: true, GatewayRuntime: true, NodeLinks: true, ControlPlanes: true},
		{Name: "routers", Commands: true, Images: true, Gateways: true, ControlPlanes: true},
	} {
		sc, err := LiveFleet(info)
		if err != nil {
			t.Fatal(err)
		}
		if err := Supports(info, sc); err != nil {
			t.Fatalf("%s: %v", info.Name, err)
		}
		if len(sc.Spec.Timeline) != 0 || len(sc.Spec.Topology.Sites) < 2 {
			t.Errorf("%s: %d steps, %d sites", info.Name, len(sc.Spec.Timeline), len(sc.Spec.Topology.Sites))
		}
		if got := sc.Spec.Runtime.Failover.Enabled; got != info.GatewayRuntime {
			t.Errorf("%s: failover %v", info.Name, got)
		}
	}
}
