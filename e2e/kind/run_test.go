package kinde2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The built-in scenarios on kind, through the CLI as a user runs them: a
// kind cluster per site with Nodes named after the members, the cloud and
// the gateways as containers on the fleet's WAN, the runtime and the
// workloads as processes in the node containers' namespaces.
var _ = Describe("scenarios on kind", func() {
	// One run proves both: a truck (one site, one node, its modem's
	// uplink degraded then cut, its runtime killed) and three stores (a
	// cluster each, six nodes, customers calling from the routers while
	// one store's ISP is out).
	It("certifies vehicle and retail (a cluster per site, routers for gateways) and leaves nothing", func() {
		reports := GinkgoT().TempDir()
		start := time.Now()
		out, err := run("run", "vehicle", "retail", "--provider", "kind", "--reports", reports)
		GinkgoWriter.Printf("edgefault run vehicle retail --provider kind: %s\n%s\n", time.Since(start).Round(time.Second), out)
		Expect(err).NotTo(HaveOccurred(), out)

		b, err := os.ReadFile(filepath.Join(reports, "report.json"))
		Expect(err).NotTo(HaveOccurred())
		var rep struct {
			Pass      bool
			Scenarios []struct {
				Name, Provider, Error string
				Pass                  bool
			}
		}
		Expect(json.Unmarshal(b, &rep)).To(Succeed())
		Expect(rep.Scenarios).To(HaveLen(2))
		for _, sc := range rep.Scenarios {
			Expect(sc.Provider).To(Equal("kind"), sc.Name)
			Expect(sc.Pass).To(BeTrue(), "%s: %s", sc.Name, sc.Error)
		}
		Expect(rep.Pass).To(BeTrue())

		// The fleet went down with the run: no container, network or
		// cluster of it is left.
		ps, err := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(ps))
		Expect(string(ps)).NotTo(Or(ContainSubstring("vehicle"), ContainSubstring("retail")))
		nets, err := exec.Command("docker", "network", "ls", "--format", "{{.Name}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(nets))
		Expect(string(nets)).NotTo(Or(ContainSubstring("vehicle"), ContainSubstring("retail")))
	})

	It("refuses the factory, whose failover needs gateways that are Nodes, saying why and what to do", func() {
		out, err := run("run", "factory", "--provider", "kind", "--reports", GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("routers, not Nodes"), ContainSubstring("turn failover off")))
		ps, _ := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(strings.Contains(string(ps), "factory")).To(BeFalse(), "nothing was made for a refused scenario")
	})
})
