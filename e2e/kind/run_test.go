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
	It("certifies vehicle (its truck a kind cluster, its modem a router container) and leaves nothing", func() {
		reports := GinkgoT().TempDir()
		start := time.Now()
		out, err := run("run", "vehicle", "--provider", "kind", "--reports", reports)
		GinkgoWriter.Printf("edgefault run vehicle --provider kind: %s\n%s\n", time.Since(start).Round(time.Second), out)
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
		Expect(rep.Scenarios).To(HaveLen(1))
		Expect(rep.Scenarios[0].Provider).To(Equal("kind"))
		Expect(rep.Scenarios[0].Pass).To(BeTrue(), rep.Scenarios[0].Error)
		Expect(rep.Pass).To(BeTrue())

		// The fleet went down with the run: no container, network or
		// cluster of it is left.
		ps, err := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(ps))
		Expect(string(ps)).NotTo(ContainSubstring("vehicle"))
		nets, err := exec.Command("docker", "network", "ls", "--format", "{{.Name}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(nets))
		Expect(string(nets)).NotTo(ContainSubstring("vehicle"))
	})

	It("refuses the factory, whose failover needs gateways that are Nodes, saying why and what to do", func() {
		out, err := run("run", "factory", "--provider", "kind", "--reports", GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("routers, not Nodes"), ContainSubstring("turn failover off")))
		ps, _ := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(strings.Contains(string(ps), "factory")).To(BeFalse(), "nothing was made for a refused scenario")
	})
})
