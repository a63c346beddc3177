// A user's own suite, as the README shows it: nothing here knows about
// edgefault's helpers, its binaries or its cleanup.
package telemetry

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
)

func TestTelemetry(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "our telemetry agent")
}

var _ = Describe("our telemetry agent", func() {
	It("survives a truck's day", func(ctx SpecContext) {
		sc, err := scenarios.LoadScenarioFile("testdata/truck.yaml") // a workload of type command: your agent
		Expect(err).NotTo(HaveOccurred())
		res := edgetest.Run(ctx, sc, edgetest.WithTimeScale(240))
		Expect(res).To(edgetest.Pass())                                  // every expectation held
		Expect(res).To(edgetest.PassValidator("delivered-exactly-once")) // or name one
	})
})
