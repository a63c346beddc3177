package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// A user's own app, certified by its own evidence: the example pair
// (examples/), its cloud side a cloud workload the edge side is told the
// address of, one site running the agent that buffers and one the agent
// that drops while offline, both sites' uplinks cut, the cloud side
// killed once. One run shows delivered passing and failing.
var _ = Describe("a user's app", func() {
	It("passes delivered when it buffers, fails it with the lost ids when it drops, its cloud side in the cloud", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		// The apps run as users of their own: what they run must be
		// theirs to read and execute.
		Expect(os.Chmod(dir, 0o755)).To(Succeed())
		build := func(name string) string {
			GinkgoHelper()
			out := filepath.Join(dir, name)
			b, err := exec.CommandContext(ctx, "go", "build", "-o", out, "../examples/"+name).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(b))
			return out
		}
		agent, ingest := build("edge-agent"), build("ingest")
		sc, err := scenarios.ParseScenario("app.yaml", []byte(fmt.Sprintf(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: app, description: the example app on two farms}
spec:
  timeScale: 20
  topology:
    sites:
    - name: keeps
      gateway: {name: keeps-gw, uplink: {rate: 20mbit, delay: 20ms}}
      nodes: [keeps-1]
    - name: drops
      gateway: {name: drops-gw, uplink: {rate: 20mbit, delay: 20ms}}
      nodes: [drops-1]
  runtime:
    gate: {minDownload: 1mbit}
  workloads:
  - name: ingest
    type: command
    on: cloud
    command: [%[1]s, -listen=:9000]
    port: 9000
    ready: {http: /healthz, within: 20s}
  - {name: agent, type: command, on: keeps, command: [%[2]s, -period=200ms]}
  - {name: agent-naive, type: command, on: drops, command: [%[2]s, -period=200ms, -naive]}
  timeline:
  - {at: 2m, group: keeps-gw, outage: true, for: 3m}
  - {at: 2m, group: drops-gw, outage: true, for: 3m}
  - {at: 7m, group: cloud, kill: workload/ingest, note: the cloud side crashes once}
  duration: 12m
  expect:
  - {validator: delivered, group: keeps, within: 8s, ordered: true}
  - {validator: delivered, group: drops, within: 8s}
  - {validator: no-restart-loops}
`, ingest, agent)))
		Expect(err).NotTo(HaveOccurred())
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("a%d-", os.Getpid()%1000)
		}))
		Expect(res.Error).To(BeEmpty())
		verdict := func(group string) validators.Verdict {
			GinkgoHelper()
			for _, v := range res.Verdicts {
				if v.Validator == "delivered" && v.Group == group {
					return v
				}
			}
			Fail("no delivered verdict for " + group)
			return validators.Verdict{}
		}
		keeps, drops := verdict("keeps"), verdict("drops")
		Expect(keeps.Pass).To(BeTrue(), keeps.Summary)
		Expect(keeps.Numbers["sent"]).To(BeNumerically(">", 20), keeps.Summary)
		Expect(keeps.Numbers["lost"]).To(BeZero())

		Expect(drops.Pass).To(BeFalse(), drops.Summary)
		Expect(drops.Numbers["lost"]).To(BeNumerically(">", 3), "an outage of ~9 s at 5 readings/s loses dozens: %s", drops.Summary)
		Expect(drops.Summary).To(MatchRegexp(`\d+ lost \(drops-1-\d+, drops-1-\d+`), "the lost ids are quoted")
		Expect(drops.Evidence).NotTo(BeEmpty())
		for _, e := range drops.Evidence {
			Expect(e.Component).To(Equal("app/agent-naive"), "the quoted evidence is labelled the app's own")
		}
		// The cloud side was killed once and came back: a planned exit.
		Expect(res).To(edgetest.PassValidator("no-restart-loops"))
		sup, err := os.ReadFile(filepath.Join(res.Evidence, "cloud-supervisor.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(sup), `"process":"workload/ingest"`)).To(BeNumerically(">=", 3), "started, killed, started again:\n%s", sup)
	})
})
