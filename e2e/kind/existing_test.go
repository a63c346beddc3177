package kinde2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The kind cluster as an existing cluster, reached through its kubeconfig
// alone, its nodes labelled as a user would (the worker plays the
// vehicle's truck-ecu, the control plane the cloud): the node mapping,
// the dry run, the node agents deployed by the provider shaping the
// worker's uplink and a pod on it (real traffic), an impairment that
// would cut the nodes off their API server refused, a harness killed with
// SIGKILL whose impairments the agents clear within their lease, and
// nothing of the harness left after edgefault cleanup; requests to the
// agents without the run's token are refused.
var _ = Describe("an existing cluster", Ordered, func() {
	var (
		kc  string
		cs  kubernetes.Interface
		ref string // the runtime's image, on every node
	)
	BeforeAll(func(ctx SpecContext) {
		kc = cluster.Kubeconfig
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		Expect(err).NotTo(HaveOccurred())
		cs, err = kubernetes.NewForConfig(rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(cluster.Nodes).To(HaveLen(3))
		// The fixture preloads the runtime's image (no registry here).
		var archive []byte
		ref, archive, err = kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(ctx, archive)).To(Succeed())
		Expect(clusters.LoadImage(ctx, cluster, archive)).To(Succeed())
	})
	// cast labels the truck's node and the cloud's as a user would, and
	// takes the labels off after the spec.
	cast := func(truck, cloud string) {
		GinkgoHelper()
		label := func(node, patch string) {
			GinkgoHelper()
			// Not the spec's context: the labels come off after it ends.
			_, err := cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		label(truck, `{"metadata":{"labels":{"edgefault.io/role":"node","edgefault.io/site":"truck","edgefault.io/member":"truck-ecu"}}}`)
		label(cloud, `{"metadata":{"labels":{"edgefault.io/role":"cloud","edgefault.io/member":"cloud"}}}`)
		DeferCleanup(func() {
			label(truck, `{"metadata":{"labels":{"edgefault.io/role":null,"edgefault.io/site":"e2e","edgefault.io/member":null}}}`)
			label(cloud, `{"metadata":{"labels":{"edgefault.io/role":null,"edgefault.io/member":null}}}`)
		})
	}

	It("is played through its kubeconfig: mapped, dry-run, shaped by its node agents (a node and a pod), cleared after a SIGKILL, cleaned up", func(ctx SpecContext) {
		cpNode, worker := cluster.Nodes[0], cluster.Nodes[1]
		// The far end of the traffic that is cut: a container beside the
		// nodes, not the API server's node.
		creds, err := json.Marshal(sink.Credentials{Sites: []sink.Site{{Name: "truck", Token: newToken(), Members: []string{"truck-ecu"}}}, Readers: []string{newToken()}})
		Expect(err).NotTo(HaveOccurred())
		cloud, err := clusters.StartCloud(ctx, cluster, kind.CloudSpec{Image: ref, Credentials: creds})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.StopCloud(context.Background(), cloud)).To(Succeed()) })
		cast(worker.Name, cpNode.Name)

		By("the mapping and the dry run, before anything is deployed")
		out := mustRun("fleet", "list", "--provider", "existing", "--kubeconfig", kc)
		Expect(out).To(MatchRegexp(`(?m)^%s\s+truck-ecu\s+node\s+truck`, worker.Name))
		Expect(out).To(MatchRegexp(`(?m)^%s\s+cloud\s+cloud`, cpNode.Name))
		out = mustRun("run", "--dry-run", "vehicle", "--provider", "existing", "--kubeconfig", kc)
		GinkgoWriter.Printf("dry run:\n%s", out)
		Expect(out).To(ContainSubstring("dry run: nothing touched"))
		Expect(out).To(MatchRegexp(`40m0s\s+1h0m0s\s+truck-modem\s+node %s\s+outage`, worker.Name))
		Expect(out).To(MatchRegexp(`1h10m0s\s+-\s+truck-ecu\s+node %s\s+kill runtime`, worker.Name))
		Expect(out).NotTo(ContainSubstring("would refuse"))
		// A scenario its labels cannot play: named, and exit 1.
		out, err = run("run", "--dry-run", "retail", "--provider", "existing", "--kubeconfig", kc)
		Expect(err).To(HaveOccurred(), "a dry run of a topology no node plays:\n%s", out)
		Expect(out).To(MatchRegexp(`would refuse: the cluster cannot play this topology:\s+member \S+: no node plays it: label one`))
		_, err = cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a dry run deployed something: %v", err)

		By("the provider deploys the agents")
		vehicle, err := scenarios.Builtin("vehicle")
		Expect(err).NotTo(HaveOccurred())
		p, err := existing.NewProvider(existing.WithKubeconfig(kc), existing.WithImage(ref), existing.WithLedger(led))
		Expect(err).NotTo(HaveOccurred())
		const fleet = "ex-e2e"
		fl, err := p.Up(ctx, fleet, &vehicle.Spec.Topology)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = p.Down(context.Background(), fleet) })
		Expect(fl.Members()).To(ConsistOf(
			HaveField("Name", "cloud"), HaveField("Name", "truck-ecu")))
		sh, err := fl.(*existing.Fleet).Shaper()
		Expect(err).NotTo(HaveOccurred())

		// Through the API server, as the harness reaches them, but without
		// the run's token (or with another): every request is refused.
		agentPods, err := cs.CoreV1().Pods(existing.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=" + existing.AgentName, FieldSelector: "spec.nodeName=" + worker.Name})
		Expect(err).NotTo(HaveOccurred())
		Expect(agentPods.Items).NotTo(BeEmpty())
		for _, tc := range []struct{ verb, path, token string }{
			{"GET", "v1/impairments", ""},
			{"PUT", "v1/impairments/uplink", ""},
			{"GET", "v1/evidence", "not-the-run-s-token-0123"},
			{"POST", "v1/kill/anything", ""},
		} {
			req := cs.CoreV1().RESTClient().Verb(tc.verb).Namespace(existing.Namespace).Resource("pods").
				Name(fmt.Sprintf("%s:%d", agentPods.Items[0].Name, existing.AgentPort)).SubResource("proxy").Suffix(tc.path)
			if tc.token != "" {
				req = req.SetHeader("X-Edgefault-Token", tc.token)
			}
			var code int
			req.Body([]byte(`{"outage":true}`)).Do(ctx).StatusCode(&code)
			Expect(code).To(Equal(401), "%s %s with token %q", tc.verb, tc.path, tc.token)
		}

		wpid, err := kind.ContainerPID(ctx, worker.Name)
		Expect(err).NotTo(HaveOccurred())
		cppid, err := kind.ContainerPID(ctx, cpNode.Name)
		Expect(err).NotTo(HaveOccurred())
		cloudPID, err := kind.ContainerPID(ctx, cloud.Containers[0])
		Expect(err).NotTo(HaveOccurred())
		nsOf := func(pid int) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }
		ecu, err := fl.Member("truck-ecu")
		Expect(err).NotTo(HaveOccurred())
		cloudNode, err := fl.Member("cloud")
		Expect(err).NotTo(HaveOccurred())
		waddr := ecu.Address
		// From the cloud to the node: the agent cuts what arrives (a
		// conversation stalls, with no local error).
		flows := func() int {
			GinkgoHelper()
			got, err := traffic.UDPTrain(ctx, nsOf(cloudPID), nsOf(wpid), waddr+":9912", 50, 200, 500)
			Expect(err).NotTo(HaveOccurred())
			return got
		}
		Expect(flows()).To(BeNumerically(">=", 45), "the uplink did not carry datagrams before the cut")

		// The cloud member is the API server's node: an impairment held
		// to it would cut the agents off.
		err = sh.Apply(ctx, "truck-ecu", shaper.Impairment{Outage: true})
		Expect(err).To(MatchError(ContainSubstring("where the nodes reach their API server")))

		// The vehicle's outage is its gateway's (truck-modem): here the
		// link of the node behind it.
		toCloud := []netip.Prefix{netip.PrefixFrom(cloud.Address, 32)}
		asked := time.Now()
		Expect(sh.Apply(ctx, "truck-modem", shaper.Impairment{Outage: true, Targets: toCloud})).To(Succeed())
		GinkgoWriter.Printf("first cut in force %v after the request (the agents starting, the lease seen live)\n", time.Since(asked).Round(time.Millisecond))
		Expect(flows()).To(Equal(0), "datagrams crossed the cut uplink")
		cur, ok, err := sh.Current("truck-ecu")
		Expect(err).NotTo(HaveOccurred())
		Expect(ok && cur.Outage).To(BeTrue(), "the agent does not report the cut: %v", cur)
		asked = time.Now()
		Expect(sh.Clear(ctx, "truck-ecu")).To(Succeed())
		GinkgoWriter.Printf("cleared %v after the request\n", time.Since(asked).Round(time.Millisecond))
		Expect(flows()).To(BeNumerically(">=", 45), "the uplink did not carry datagrams after the clear")

		By("a pod on the node, shaped on its veth")
		podNS := fmt.Sprintf("ef-e2e-pods-%d", os.Getpid()%10000)
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNS}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			_ = cs.CoreV1().Namespaces().Delete(context.Background(), podNS, metav1.DeleteOptions{})
		})
		marker := fmt.Sprintf("--listen=:%d", 18000+os.Getpid()%1000)
		_, err = cs.CoreV1().Pods(podNS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "till-0"}, Spec: corev1.PodSpec{
			NodeName:                      worker.Name,
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{Name: "till", Image: ref, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/edgeguard", "content", marker}}},
		}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		var podIP string
		Eventually(func() string {
			p, err := cs.CoreV1().Pods(podNS).Get(ctx, "till-0", metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return ""
			}
			podIP = p.Status.PodIP
			return podIP
		}).WithTimeout(2*time.Minute).WithPolling(time.Second).ShouldNot(BeEmpty(), "the pod never ran")
		podPID := pidWithArg(marker)
		Expect(podPID).NotTo(BeZero(), "no process of the pod found on this machine")
		pod := podNS + "/till-0"
		Expect(sh.ApplyPod(ctx, pod, shaper.Impairment{DownRate: 2 * shaper.Mbit})).To(Succeed())
		down, err := traffic.TCPThroughput(ctx, nsOf(cppid), nsOf(podPID), podIP+":0", time.Second, 3*time.Second)
		Expect(err).NotTo(HaveOccurred())
		up, err := traffic.TCPThroughput(ctx, nsOf(podPID), nsOf(cppid), cloudNode.Address+":0", 500*time.Millisecond, 2*time.Second)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("pod at downRate 2mbit: down %.2f Mbit/s, up %.1f Mbit/s\n", down.Goodput()/1e6, up.Goodput()/1e6)
		Expect(down.Goodput()).To(BeNumerically("~", 1.9e6, 0.5e6), "the pod's download")
		Expect(up.Goodput()).To(BeNumerically(">", 10e6), "the pod's upload, which is not shaped")
		Expect(sh.ClearPod(ctx, pod)).To(Succeed())
		Expect(sh.Close()).To(Succeed())

		By("a harness killed with SIGKILL while its impairments hold")
		hold := exec.Command(os.Args[0])
		hold.Env = append(os.Environ(), "EDGEFAULT_E2E_HOLD="+fleet, "EDGEFAULT_E2E_TARGET="+cloud.Address.String(), "EDGEFAULT_E2E_POD="+pod)
		hold.Stderr = GinkgoWriter
		stdout, err := hold.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		Expect(hold.Start()).To(Succeed())
		DeferCleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		Expect(line).To(HavePrefix("held"))
		Expect(flows()).To(Equal(0), "the killed harness's cut was not in force")
		podFlows := func() int {
			GinkgoHelper()
			got, err := traffic.UDPTrain(ctx, nsOf(cppid), nsOf(podPID), podIP+":9913", 50, 200, 500)
			Expect(err).NotTo(HaveOccurred())
			return got
		}
		Expect(podFlows()).To(Equal(0), "the killed harness's pod outage was not in force")
		Expect(hold.Process.Signal(syscall.SIGKILL)).To(Succeed())
		killed := time.Now()
		_ = hold.Wait()
		agents := existing.NewAgents(cs, fl.(*existing.Fleet).Token)
		Eventually(func() bool {
			st, err := agents.State(ctx, worker.Name)
			return err == nil && st.Uplink == nil && len(st.Pods) == 0
		}).WithTimeout(45*time.Second).WithPolling(250*time.Millisecond).Should(BeTrue(), "the agent kept the dead harness's impairments")
		GinkgoWriter.Printf("the agent cleared the uplink and the pod %v after the harness's SIGKILL (lease 15 s)\n", time.Since(killed).Round(100*time.Millisecond))
		Expect(time.Since(killed)).To(BeNumerically("<", 30*time.Second), "cleared later than the lease and two polls")
		Expect(flows()).To(BeNumerically(">=", 45), "the uplink did not carry datagrams after the agent cleared it")
		Expect(podFlows()).To(BeNumerically(">=", 45), "the pod did not get datagrams after the agent cleared it")

		By("edgefault cleanup removes what the dead harness left")
		out = mustRun("cleanup", "--fleet", fleet)
		Expect(out).To(ContainSubstring("cleaned up " + fleet))
		_, err = cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there: %v", existing.Namespace, err)
		// The agents' DaemonSet, wherever it might be (the suite's other
		// specs deploy the runtime's own, which is theirs to remove).
		ds, err := cs.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + existing.AgentName})
		Expect(err).NotTo(HaveOccurred())
		Expect(ds.Items).To(BeEmpty(), "the agents' DaemonSet remains")
		_, err = os.Stat(filepath.Join(stateDir, "existing-fleets", fleet))
		Expect(os.IsNotExist(err)).To(BeTrue(), "the fleet's state remains: %v", err)
	})

	// The vehicle scenario played on the cluster as it is: the truck is
	// a worker, the cloud the other worker (not the API server's node,
	// whose cut the agents refuse), the runtime, the workloads and the
	// cloud's services pods from the runtime's image, the kill a SIGKILL
	// from the node's agent, the harness reaching them through the API
	// server alone.
	It("plays the vehicle scenario through its kubeconfig: pods for the runtime, workloads and cloud, the report naming the cluster and nodes, nothing left", func(ctx SpecContext) {
		truck, cloudNode := cluster.Nodes[1], cluster.Nodes[2]
		cast(truck.Name, cloudNode.Name)

		reports := GinkgoT().TempDir()
		start := time.Now()
		out, err := run("run", "vehicle", "--provider", "existing", "--kubeconfig", kc, "--agent-image", ref, "--reports", reports)
		GinkgoWriter.Printf("edgefault run vehicle --provider existing: %s\n%s\n", time.Since(start).Round(time.Second), out)
		Expect(err).NotTo(HaveOccurred(), out)

		b, err := os.ReadFile(filepath.Join(reports, "report.json"))
		Expect(err).NotTo(HaveOccurred())
		var rep struct {
			Pass      bool
			Scenarios []struct {
				Name, Provider, Error, Runtime, Cluster, Placement string
				Pass                                               bool
				Verdicts                                           []struct {
					Validator string
					Pass      bool
				}
			}
		}
		Expect(json.Unmarshal(b, &rep)).To(Succeed())
		Expect(rep.Scenarios).To(HaveLen(1))
		sc := rep.Scenarios[0]
		Expect(sc.Pass).To(BeTrue(), sc.Error)
		Expect(sc.Provider).To(Equal("existing"))
		Expect(sc.Verdicts).To(HaveLen(4))
		Expect(sc.Runtime).To(ContainSubstring("a pod on each node (" + ref + ")"))
		Expect(sc.Cluster).To(And(ContainSubstring(kc), ContainSubstring("https://")))
		Expect(sc.Placement).To(And(ContainSubstring("truck-ecu: node "+truck.Name), ContainSubstring("cloud: node "+cloudNode.Name)))
		html, err := os.ReadFile(filepath.Join(reports, "report.html"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(html)).To(ContainSubstring("truck-ecu: node " + truck.Name))

		// The runtime was a pod, crashed by its node's agent (a planned
		// exit) and started again as a new pod.
		sup := runtimeSupervision(reports, "vehicle", "truck-ecu")
		Expect(sup).To(ContainElement(And(HaveField("Event", "exited"), HaveField("Fields.Planned", true))), "%+v", sup)
		Expect(sup).NotTo(ContainElement(And(HaveField("Event", "exited"), HaveField("Fields.Planned", false))), "no unplanned exit: %+v", sup)
		started := 0
		for _, e := range sup {
			if e.Event == "started" {
				Expect(e.Fields.ID).To(HavePrefix("pod " + existing.Namespace + "/runtime-truck-ecu-"))
				started++
			}
		}
		Expect(started).To(Equal(2), "%+v", sup)
		// The crash was a SIGKILL (137), not a stop with grace.
		logs, err := os.ReadFile(filepath.Join(reports, "vehicle", "logs", "agent-"+truck.Name+".log"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(logs)).To(MatchRegexp(`msg="signalled a workload" .*pod=runtime-truck-ecu-\S+ signal=KILL processes=1`))
		// The cloud's evidence came from its node's agent.
		Expect(filepath.Join(reports, "vehicle", "evidence", "cloud-sink.jsonl")).To(BeAnExistingFile())

		// The run took its fleet down: no namespace, no run directory on
		// the nodes, no state.
		_, err = cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there: %v", existing.Namespace, err)
		for _, n := range []string{truck.Name, cloudNode.Name} {
			ls, err := exec.Command("docker", "exec", n, "ls", "-A", existing.DataRoot).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(ls))
			Expect(strings.TrimSpace(string(ls))).To(BeEmpty(), "a run's directory is left on %s", n)
		}
		fleets, err := os.ReadDir(filepath.Join(stateDir, "existing-fleets"))
		if err == nil {
			Expect(fleets).To(BeEmpty(), "a fleet's state remains")
		}
	})
})

func ptr[T any](v T) *T { return &v }

// pidWithArg is a process on this machine (the kind nodes' included)
// whose arguments hold arg exactly; 0 if none.
func pidWithArg(arg string) int {
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				return pid
			}
		}
	}
	return 0
}

// holdIfInvoked is the test binary as a harness (EDGEFAULT_E2E_HOLD=FLEET):
// it cuts the fleet's truck-ecu uplink towards EDGEFAULT_E2E_TARGET and
// the pod EDGEFAULT_E2E_POD, says "held", and holds them until killed.
func holdIfInvoked() {
	name := os.Getenv("EDGEFAULT_E2E_HOLD")
	if name == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "hold:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	p, err := existing.NewProvider()
	if err != nil {
		fail(err)
	}
	f, err := p.Get(ctx, name)
	if err != nil {
		fail(err)
	}
	sh, err := f.(*existing.Fleet).Shaper()
	if err != nil {
		fail(err)
	}
	a := netip.MustParseAddr(os.Getenv("EDGEFAULT_E2E_TARGET"))
	if err := sh.Apply(ctx, "truck-ecu", shaper.Impairment{Outage: true, Targets: []netip.Prefix{netip.PrefixFrom(a, 32)}}); err != nil {
		fail(err)
	}
	if err := sh.ApplyPod(ctx, os.Getenv("EDGEFAULT_E2E_POD"), shaper.Impairment{Outage: true}); err != nil {
		fail(err)
	}
	fmt.Println("held")
	select {}
}
