package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// buildExampleApp builds the example app's two sides (examples/) into a
// directory of the spec's own, which the apps, run as users of their own,
// can read and execute.
func buildExampleApp(ctx SpecContext) (dir, agent, ingest string) {
	GinkgoHelper()
	dir = GinkgoT().TempDir()
	Expect(os.Chmod(dir, 0o755)).To(Succeed())
	build := func(name string) string {
		out := filepath.Join(dir, name)
		b, err := exec.CommandContext(ctx, "go", "build", "-o", out, "../examples/"+name).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(b))
		return out
	}
	return dir, build("edge-agent"), build("ingest")
}

// A user's own app, certified by its own evidence: the example pair
// (examples/), its cloud side a cloud workload the edge side is told the
// address of, one site running the agent that buffers and one the agent
// that drops while offline, both sites' uplinks cut, the cloud side
// killed once. One run shows delivered passing and failing.
var _ = Describe("a user's app", func() {
	It("passes delivered when it buffers, fails it with the lost ids when it drops, its cloud side in the cloud", func(ctx SpecContext) {
		dir, agent, ingest := buildExampleApp(ctx)
		// A hostile app: it tries to get out of its sandbox and logs, as
		// its own evidence, what it got.
		hostile := filepath.Join(dir, "hostile.sh")
		Expect(os.WriteFile(hostile, []byte(hostileScript), 0o755)).To(Succeed())
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
  - {name: agent, type: command, on: keeps, command: [%[2]s, -period=200ms, -listen=:8000], port: 8000}
  - {name: agent-naive, type: command, on: drops, command: [%[2]s, -period=200ms, -naive, -listen=:8000], port: 8000}
  - {name: hostile, type: command, on: keeps, command: [%[3]s, %[4]s], kubeconfig: true}
  timeline:
  - {at: 2m, group: keeps-gw, outage: true, for: 3m}
  - {at: 2m, group: drops-gw, outage: true, for: 3m}
  - {at: 7m, group: cloud, kill: workload/ingest, note: the cloud side crashes once}
  duration: 12m
  expect:
  - {validator: delivered, group: keeps, within: 8s, ordered: true}
  - {validator: delivered, group: drops, within: 8s}
  - {validator: endpoint-answers, group: keeps, workload: agent, http: /healthz, maxLatency: 500ms}
  - {validator: endpoint-answers, group: drops, workload: agent-naive, http: /healthz}
  - {validator: metric, group: keeps, workload: agent, metric: 'edge_agent_queue_depth > 0', phase: during}
  - {validator: metric, group: keeps, workload: agent, metric: 'edge_agent_queue_depth <= 5', phase: after, within: 8s}
  - {validator: metric, group: drops, workload: agent-naive, metric: 'edge_agent_dropped_total == 0'}
  - {validator: metric, group: keeps, workload: agent, metric: 'edge_agent_no_such_metric == 0'}
  - {validator: keeps-running}
`, ingest, agent, hostile, filepath.Join(stateDir, "ledger"))))
		Expect(err).NotTo(HaveOccurred())
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("a%d-", os.Getpid()%1000)
		}))
		Expect(res.Error).To(BeEmpty())
		verdicts := func(validator, group string) []validators.Verdict {
			GinkgoHelper()
			var out []validators.Verdict
			for _, v := range res.Verdicts {
				if v.Validator == validator && v.Group == group {
					out = append(out, v)
				}
			}
			Expect(out).NotTo(BeEmpty(), "no %s verdict for %s", validator, group)
			return out
		}
		verdict := func(validator, group string) validators.Verdict {
			GinkgoHelper()
			return verdicts(validator, group)[0]
		}
		keeps, drops := verdict("delivered", "keeps"), verdict("delivered", "drops")
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
		// Its endpoint: the buffering agent answers from the LAN all
		// along, the naive one stops while its site is offline.
		up, down := verdict("endpoint-answers", "keeps"), verdict("endpoint-answers", "drops")
		Expect(up.Pass).To(BeTrue(), up.Summary)
		Expect(up.Numbers["keeps-1.probes"]).To(BeNumerically(">", 40), up.Summary)
		Expect(down.Pass).To(BeFalse(), down.Summary)
		Expect(down.Summary).To(ContainSubstring("during the outage"))
		// Its metrics: the queue grows offline and drains after; the
		// naive agent drops; a metric it does not expose is named.
		ms := verdicts("metric", "keeps")
		Expect(ms).To(HaveLen(3))
		Expect(ms[0].Pass).To(BeTrue(), "queue depth > 0 during the outage: %s", ms[0].Summary)
		Expect(ms[1].Pass).To(BeTrue(), "queue drained after the restore: %s", ms[1].Summary)
		Expect(ms[2].Pass).To(BeFalse())
		Expect(ms[2].Summary).To(And(ContainSubstring("does not expose edge_agent_no_such_metric"), ContainSubstring("edge_agent_queue_depth")))
		dropped := verdict("metric", "drops")
		Expect(dropped.Pass).To(BeFalse(), dropped.Summary)
		Expect(dropped.Summary).To(ContainSubstring("edge_agent_dropped_total"))

		// The hostile app got nowhere, and said so in its own evidence.
		got, err := os.ReadFile(filepath.Join(res.Evidence, "keeps-1.hostile.app.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		for _, what := range []string{"write-harness-evidence", "create-evidence", "read-ledger", "enter-host-netns", "capabilities", "harness-env", "own-data"} {
			Expect(string(got)).To(MatchRegexp(`"what":"%s","result":"(denied|allowed)"`, what), "the hostile app tried %s:\n%s", what, got)
		}
		Expect(string(got)).NotTo(ContainSubstring(`"result":"escaped"`))
		Expect(string(got)).To(ContainSubstring(`"what":"own-data","result":"allowed"`))
		Expect(string(got)).To(ContainSubstring(`"what":"kubeconfig","result":"allowed"`), "its node's identity, given by kubeconfig: true, is its to read")
		rt, err := os.ReadFile(filepath.Join(res.Evidence, "keeps-1-runtime.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(rt)).NotTo(ContainSubstring("forged"))

		// The cloud side was killed once and came back: a planned exit.
		Expect(res).To(edgetest.PassValidator("keeps-running"))
		sup, err := os.ReadFile(filepath.Join(res.Evidence, "cloud-supervisor.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(sup), `"process":"workload/ingest"`)).To(BeNumerically(">=", 3), "started, killed, started again:\n%s", sup)
	})
})

// The modem comes back with a new address (cellular, CGNAT): the
// connections its nodes had open are reset, not stalled. The runtime's
// forwarder and an agent that dials again deliver everything; an agent
// that keeps to its first connection (-no-reconnect, the documented
// negative control) fails delivered from the change on.
var _ = Describe("an uplink that comes back with a new address", func() {
	It("breaks open connections: the runtime and a reconnecting app deliver, an app that never reconnects fails delivered", func(ctx SpecContext) {
		_, agent, ingest := buildExampleApp(ctx)
		sc, err := scenarios.ParseScenario("readdress.yaml", []byte(fmt.Sprintf(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: readdress, description: a modem reconnects with a new address}
spec:
  timeScale: 10
  topology:
    sites:
    - name: cell
      controlPlane: none
      gateway: {name: cell-modem, uplink: {rate: 20mbit, delay: 20ms}}
      nodes: [cell-1, cell-2]
  runtime:
    gate: {minDownload: 1mbit}
    buffer: {durability: disk}
  workloads:
  - name: ingest
    type: command
    on: cloud
    command: [%[1]s, -listen=:9000]
    port: 9000
    ready: {http: /healthz, within: 20s}
  - {name: agent, type: command, on: cell-1, command: [%[2]s, -period=200ms]}
  - {name: sticky, type: command, on: cell-2, command: [%[2]s, -period=200ms, -no-reconnect]}
  - {name: telemetry, type: produce, on: cell, period: 2s}
  timeline:
  - {at: 1m, group: cell-modem, newAddress: true, note: the modem reconnects with a new address}
  duration: 4m
  expect:
  - {validator: delivered-exactly-once, group: cell, within: 1m}
  - {validator: delivered, group: cell-1, within: 8s}
  - {validator: delivered, group: cell-2, within: 8s}
`, ingest, agent)))
		Expect(err).NotTo(HaveOccurred())
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("n%d-", os.Getpid()%1000)
		}))
		Expect(res.Error).To(BeEmpty())
		Expect(res).To(edgetest.PassValidator("delivered-exactly-once"))
		var reconnects, sticky validators.Verdict
		for _, v := range res.Verdicts {
			switch {
			case v.Validator == "delivered" && v.Group == "cell-1":
				reconnects = v
			case v.Validator == "delivered" && v.Group == "cell-2":
				sticky = v
			}
		}
		Expect(reconnects.Pass).To(BeTrue(), reconnects.Summary)
		Expect(reconnects.Numbers["sent"]).To(BeNumerically(">", 50), reconnects.Summary)
		Expect(sticky.Pass).To(BeFalse(), sticky.Summary)
		Expect(sticky.Numbers["lost"]).To(BeNumerically(">", 10), sticky.Summary)
		// What the sticky agent sent before the change (6 s in, a reading
		// every 200 ms: about 30) arrived: the change stopped it.
		m := regexp.MustCompile(`lost \(cell-2-(\d+)`).FindStringSubmatch(sticky.Summary)
		Expect(m).NotTo(BeNil(), sticky.Summary)
		firstLost, _ := strconv.Atoi(m[1])
		Expect(firstLost).To(BeNumerically(">=", 20), "readings were lost before the address changed: %s", sticky.Summary)
		tl, err := os.ReadFile(filepath.Join(res.Evidence, "cell-modem-timeline.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(tl)).To(MatchRegexp(`"address-changed","fields":\{"from":"100\.64\.[0-9.]+","note":"[^"]*","to":"100\.96\.[0-9.]+"`))
	})
})

// A cloud side that never becomes ready ends the run within its bound,
// naming the workload, what the check saw and its log; here it cannot
// even start, since its program is where its user cannot reach, and
// the log says so and what to do.
var _ = Describe("a user's app that cannot start", func() {
	It("fails the run within the readiness bound, with the check, the log and why", func(ctx SpecContext) {
		dir := GinkgoT().TempDir() // 0700, root's: the app's user cannot reach it
		prog := filepath.Join(dir, "ingest.sh")
		Expect(os.WriteFile(prog, []byte("#!/bin/sh\nexec sleep 3600\n"), 0o755)).To(Succeed())
		sc, err := scenarios.ParseScenario("stuck.yaml", []byte(fmt.Sprintf(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: stuck, description: a cloud side that never answers}
spec:
  timeScale: 20
  topology:
    sites:
    - name: s
      gateway: {name: s-gw, uplink: {rate: 20mbit}}
      nodes: [s-1]
  runtime:
    gate: {minDownload: 1mbit}
  workloads:
  - {name: ingest, type: command, on: cloud, command: [%s], port: 9000, ready: {tcp: true, within: 3s}}
  timeline:
  - {at: 1m, group: s-gw, outage: true, for: 2m}
  duration: 5m
  expect:
  - {validator: keeps-running}
`, prog)))
		Expect(err).NotTo(HaveOccurred())
		reports := GinkgoT().TempDir()
		start := time.Now()
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard, o.Reports = edgeguard, reports
			o.FleetPrefix = fmt.Sprintf("s%d-", os.Getpid()%1000)
		}))
		Expect(res.Pass).To(BeFalse())
		Expect(res.Error).To(And(ContainSubstring("workload ingest on cloud not ready within 3s"), ContainSubstring("127.0.0.1:9000"), ContainSubstring("cloud-workload-ingest.log")))
		Expect(time.Since(start)).To(BeNumerically("<", 90*time.Second), "bounded by the readiness wait, not a minute of retries")
		log, err := os.ReadFile(filepath.Join(reports, "stuck", "logs", "cloud-workload-ingest.log"))
		Expect(err).NotTo(HaveOccurred())
		// The first free uid of the range: a suite running beside may hold
		// the first ones.
		Expect(string(log)).To(And(MatchRegexp(`runs as uid 700\d\d\b`), ContainSubstring("not under /root")))
	})
})

// hostileScript is a command workload that tries to leave its sandbox:
// each attempt is logged as its own evidence, "escaped" if it worked.
// $1 is the harness's ledger.
const hostileScript = `#!/bin/sh
ev() { printf '{"time":"%s","event":"attempt","what":"%s","result":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$1" "$2" >> "$APP_EVENTS"; }
try() { what=$1; shift; if "$@" >/dev/null 2>&1; then ev "$what" escaped; else ev "$what" denied; fi; }
dir=$(dirname "$APP_EVENTS")
try write-harness-evidence sh -c "echo forged >> '$dir/$NODE_NAME-runtime.jsonl'"
try create-evidence sh -c "echo forged > '$dir/$NODE_NAME-forged.jsonl'"
try read-ledger sh -c "ls '$1' | grep -q . && cat '$1'/* >/dev/null"
try enter-host-netns nsenter --net=/proc/1/ns/net true
try capabilities sh -c "grep -q 'CapEff:.*[1-9a-f]' /proc/self/status"
try harness-env sh -c "env | grep -q '^EDGEFAULT_STATE_DIR='"
if echo x > "$DATA_DIR/mine"; then ev own-data allowed; else ev own-data denied; fi
if grep -q client-certificate-data "$KUBECONFIG"; then ev kubeconfig allowed; else ev kubeconfig denied; fi
exec sleep 3600
`
