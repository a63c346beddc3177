package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/internal/uplinktest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// Three nodes behind one 50 Mbit/s uplink, each with a backlog from an
// outage: as one site, their gates reopen soon and stay open while they
// flush, and the site's flush stays within its share of the uplink, as
// the gateway counts it. make bench runs the same experiment at full size
// beside the per-node baseline.
var _ = Describe("nodes that share an uplink", Ordered, func() {
	It("reopen without flapping and flush within the uplink's share together", func() {
		ctx := context.Background()
		uplink := shaper.Impairment{Rate: 50 * shaper.Mbit, Delay: 20 * time.Millisecond}
		f, cloud, sh := runtimeFleet("eu", []scenarios.Site{{
			Name: "depot", Gateway: &scenarios.Gateway{Name: "depot-gw", Uplink: &scenarios.LinkProfile{Rate: scenarios.SameRate("50mbit"), Delay: "20ms"}},
			Nodes: []scenarios.Node{{Name: "depot-1"}, {Name: "depot-2"}, {Name: "depot-3"}},
		}})
		res, err := uplinktest.Run(ctx, uplinktest.Options{
			Fleet: f, Cloud: cloud, Shaper: sh, Edgeguard: edgeguard,
			Gateway: "depot-gw", Nodes: []string{"depot-1", "depot-2", "depot-3"},
			Uplink: uplink, Outage: 20 * time.Second, Backlog: 6 << 20, Coordinated: true, Tag: "site",
			FullDuration: 3 * time.Second, Flags: []string{"--min-download=5mbit", "--interval=1s"},
		})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("%+v\n", res)
		Expect(res.Flaps).To(BeZero(), "a gate closed while the site flushed")
		for i, d := range res.OpenAfter {
			// 10 s is the target (make bench); 3x for a loaded machine.
			Expect(d).To(BeNumerically("<", 30*time.Second), "node %d's gate opened %s after the restore", i+1, d)
		}
		// The share is 80% of what the gates measured; 90% of the uplink
		// is the target, and a loaded machine only flushes slower.
		Expect(res.MeanBps).To(BeNumerically("<=", 0.9*50e6), "the site flushed beyond its share of the uplink")
		Expect(res.MeanBps).To(BeNumerically(">", 0.25*50e6), "the site flushed far below its share")
		ideal := time.Duration(float64(res.Backlog) * 8 / (0.8 * res.Capacity) * float64(time.Second))
		Expect(res.Drain).To(BeNumerically("<", 3*ideal+5*time.Second), "drained in %s; backlog / share is %s", res.Drain, ideal)
	})
})
