package kinde2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/e2e/internal/dashcli"
)

// The built-in scenarios on kind, through the CLI as a user runs them: a
// kind cluster per site with Nodes named after the members, the cloud and
// the gateways as containers on the fleet's WAN, the runtime as a pod on
// each node's kubelet, command workloads as processes in the node
// containers' namespaces.
var _ = Describe("scenarios on kind", func() {
	// One run proves both: a truck (one site, one node, its modem's
	// uplink degraded then cut, its runtime's container killed) and three stores (a
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
				Name, Provider, Error, Runtime string
				Pass                           bool
			}
		}
		Expect(json.Unmarshal(b, &rep)).To(Succeed())
		Expect(rep.Scenarios).To(HaveLen(2))
		for _, sc := range rep.Scenarios {
			Expect(sc.Provider).To(Equal("kind"), sc.Name)
			Expect(sc.Pass).To(BeTrue(), "%s: %s", sc.Name, sc.Error)
			Expect(sc.Runtime).To(ContainSubstring("a pod on each node (edgefault/edgeguard:"), sc.Name)
		}
		Expect(rep.Pass).To(BeTrue())

		// The truck's runtime was a pod: started as one, its container
		// killed by the timeline (a planned exit) and a new pod started.
		sup := runtimeSupervision(reports, "vehicle", "truck-ecu")
		Expect(len(sup)).To(BeNumerically(">=", 3), "%+v", sup)
		Expect(sup[0].Event).To(Equal("started"))
		Expect(sup[0].Fields.ID).To(HavePrefix("pod edgefault-workloads/runtime-truck-ecu-"))
		Expect(sup).To(ContainElement(And(HaveField("Event", "exited"), HaveField("Fields.Planned", true))), "%+v", sup)
		Expect(sup).NotTo(ContainElement(And(HaveField("Event", "exited"), HaveField("Fields.Planned", false))), "no unplanned exit: %+v", sup)

		// The fleet went down with the run: no container, network or
		// cluster of it is left.
		ps, err := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(ps))
		Expect(string(ps)).NotTo(Or(ContainSubstring("vehicle"), ContainSubstring("retail")))
		nets, err := exec.Command("docker", "network", "ls", "--format", "{{.Name}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(nets))
		Expect(string(nets)).NotTo(Or(ContainSubstring("vehicle"), ContainSubstring("retail")))
	})

	// The image half: command workloads given an image run as pods on
	// the member's Node (loaded from the Docker engine, no registry), as
	// their own unprivileged users, and reach the node's runtime and the
	// cloud as a process there would. One is the runtime's own client;
	// the other the example edge agent made an image by 'edgefault kind
	// image', delivering to its cloud side across an outage.
	It("runs a scenario's image workloads as pods on their node, an app among them judged delivered", func() {
		ref, archive, err := kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(context.Background(), archive)).To(Succeed())
		dir := GinkgoT().TempDir()
		Expect(os.Chmod(dir, 0o755)).To(Succeed())
		for _, app := range []string{"edge-agent", "ingest"} {
			b := exec.Command("go", "build", "-o", filepath.Join(dir, app), "../../examples/"+app)
			b.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := b.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
		}
		agentRef := strings.TrimSpace(mustRun("kind", "image", filepath.Join(dir, "edge-agent"), "--repo", "example/edge-agent"))
		Expect(agentRef).To(HavePrefix("example/edge-agent:"))
		file := filepath.Join(dir, "pod-fetch.yaml")
		Expect(os.WriteFile(file, []byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: pod-fetch, description: workloads shipped as images}
spec:
  timeScale: 60
  topology:
    sites:
    - name: van
      gateway: {name: van-modem, uplink: {rate: 16mbit, delay: 15ms}}
      nodes: [van-ecu]
  runtime:
    gate: {minDownload: 5mbit, maxLatency: 300ms, interval: 2s}
  workloads:
  - {name: ingest, type: command, on: cloud, command: [`+filepath.Join(dir, "ingest")+`, -listen=:9000], port: 9000, ready: {http: /healthz, within: 30s}}
  - name: maps
    type: command
    on: van
    image: `+ref+`
    # Kubernetes expands $(VAR) from the pod's environment.
    command: [/edgeguard, workload, fetch, --node=$(NODE_NAME), --gate=$(EDGEGUARD_URL), --content=$(CONTENT_URL), --period=1s, --events=$(APP_EVENTS)]
  - {name: agent, type: command, on: van, image: `+agentRef+`, command: [/edge-agent, -period=500ms, -listen=:8000], port: 8000, ready: {http: /healthz, within: 60s}}
  timeline:
  - {at: 5m, group: van-modem, outage: true, for: 10m}
  duration: 20m
  expect:
  - {validator: gate-follows-link, group: van, within: 30s}
  - {validator: delivered, group: van, within: 15s}
  # A loaded two-core machine running a kind cluster may drop a probe.
  - {validator: endpoint-answers, group: van, workload: agent, http: /healthz, minShare: 95%}
  - {validator: keeps-running}
`), 0o644)).To(Succeed())
		reports := filepath.Join(dir, "reports")
		start := time.Now()
		out, err := run("run", file, "--provider", "kind", "--reports", reports)
		GinkgoWriter.Printf("edgefault run pod-fetch --provider kind: %s\n%s\n", time.Since(start).Round(time.Second), out)
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		ev, err := os.ReadFile(filepath.Join(reports, "pod-fetch", "evidence", "van-ecu.maps.app.jsonl"))
		Expect(err).NotTo(HaveOccurred(), "the pod wrote its evidence into the file mounted for it")
		Expect(string(ev)).To(ContainSubstring(`"fetched"`))
		sent, err := os.ReadFile(filepath.Join(reports, "pod-fetch", "evidence", "van-ecu.agent.app.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(sent), `"sent"`)).To(BeNumerically(">", 20), "the agent's pod logged its readings")
		sup, err := exec.Command("grep", "-rl", "pod edgefault-workloads/", filepath.Join(reports, "pod-fetch", "evidence")).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "the supervisor's evidence names the pod: %s", sup)
	})

	// The live dashboard on kind: the same session and API as on the
	// embedded fleet (the page itself is tested in a browser there).
	It("serves the live dashboard: a gateway cut from the API closes the node's gate, a restore reopens it", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		file := filepath.Join(dir, "van.yaml")
		Expect(os.WriteFile(file, []byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: van, description: a van for the presenter}
spec:
  topology:
    sites:
    - name: van
      gateway: {name: van-modem, uplink: {rate: 16mbit, delay: 15ms}}
      nodes: [van-ecu]
  runtime:
    gate: {minDownload: 5mbit, interval: 2s}
  duration: 10m
  expect:
  - {validator: keeps-running}
`), 0o644)).To(Succeed())
		reports := filepath.Join(dir, "reports")
		start := time.Now()
		s, err := dashcli.Start(bin, 6*time.Minute, "-f", file, "--provider", "kind", "--listen", "127.0.0.1:0", "--reports", reports)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.Kill)
		GinkgoWriter.Printf("demo --ui --provider kind: serving after %v\n", time.Since(start).Round(time.Second))
		gate := func() string {
			st, err := s.State(ctx)
			if err != nil {
				return err.Error()
			}
			m, _ := dashcli.Member(st, "van-ecu")
			return m.Gate
		}
		Eventually(gate, time.Minute, 500*time.Millisecond).Should(Equal("open"))
		code, msg, err := s.Post(ctx, "/api/shape", map[string]any{"target": "van-modem", "outage": true})
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200), msg)
		Eventually(gate, 45*time.Second, 500*time.Millisecond).ShouldNot(Equal("open"))
		st, err := s.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		m, _ := dashcli.Member(st, "van-modem")
		Expect(m.Outage).To(BeTrue())
		code, msg, err = s.Post(ctx, "/api/restore", map[string]any{"target": "van-modem"})
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200), msg)
		Eventually(gate, 90*time.Second, 500*time.Millisecond).Should(Equal("open"))
		// A member the fleet does not have: refused, naming those it has.
		code, msg, err = s.Post(ctx, "/api/shape", map[string]any{"target": "van-ecu-2", "rate": "1mbit"})
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(422))
		Expect(msg).To(And(ContainSubstring(`no gateway or node "van-ecu-2"`), ContainSubstring("van-modem")))
		Expect(s.End(3*time.Minute)).To(Succeed(), s.Output())
		Expect(filepath.Join(reports, "report.json")).To(BeAnExistingFile())
		ps, err := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(ps))
		Expect(string(ps)).NotTo(ContainSubstring("van"), "the session's fleet went down with it")
	})

	It("refuses the factory, whose failover needs gateways that are Nodes, saying why and what to do", func() {
		out, err := run("run", "factory", "--provider", "kind", "--reports", GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("routers, not Nodes"), ContainSubstring("turn failover off")))
		ps, _ := exec.Command("docker", "ps", "--all", "--format", "{{.Names}}").CombinedOutput()
		Expect(strings.Contains(string(ps), "factory")).To(BeFalse(), "nothing was made for a refused scenario")

		// Nor is a fleet without control planes, which kind cannot make.
		out, err = run("fleet", "up", "--provider", "kind", "--control-planes=false", "--name", "noplanes")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("the flag is for --provider netns"))
	})
})

// supEvent is a line of a member's supervisor evidence.
type supEvent struct {
	Event  string
	Fields struct {
		Process, ID string
		Planned     bool
	}
}

// runtimeSupervision is what member's supervisor saw of its runtime in
// scenario's report under reports: started, exited (planned or not).
func runtimeSupervision(reports, scenario, member string) []supEvent {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(reports, scenario, "evidence", member+"-supervisor.jsonl"))
	Expect(err).NotTo(HaveOccurred())
	var sup []supEvent
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e supEvent
		Expect(json.Unmarshal([]byte(line), &e)).To(Succeed(), line)
		if e.Fields.Process == "runtime" {
			sup = append(sup, e)
		}
	}
	return sup
}
