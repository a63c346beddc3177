package kinde2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/units"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The talk's demo, on a real kubelet: the DaemonSet as shipped (the
// sidecar gate with its startup probe, readiness following the gate,
// liveness not), against a cloud container, with the worker's cloud-bound
// traffic throttled at its veth.
var _ = Describe("the runtime as real pods", Ordered, func() {
	var (
		ctx    = context.Background()
		cs     kubernetes.Interface
		worker kind.Node
		cloud  *kind.Cloud
		sh     *shaper.Shaper
		target shaper.Target
		slow   shaper.Impairment
	)

	BeforeAll(func() {
		var err error
		cs, err = cluster.Client()
		Expect(err).NotTo(HaveOccurred())
		Expect(cluster.Nodes).To(HaveLen(3))
		worker = cluster.Nodes[1]

		ref, archive, err := kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(ctx, archive)).To(Succeed())
		Expect(clusters.LoadImage(ctx, cluster, archive)).To(Succeed())

		token := newToken()
		creds, err := json.Marshal(sink.Credentials{Sites: []sink.Site{{Name: "e2e", Token: token, Members: []string{worker.Name}}}, Readers: []string{newToken()}})
		Expect(err).NotTo(HaveOccurred())
		cloud, err = clusters.StartCloud(ctx, cluster, kind.CloudSpec{Image: ref, Credentials: creds})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.StopCloud(context.Background(), cloud)).To(Succeed()) })

		sh, err = shaper.New(shaper.WithLedger(led, owner), shaper.WithLogger(nil))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sh.Close)
		target, err = kind.NodeTarget(ctx, worker.Name)
		Expect(err).NotTo(HaveOccurred())
		// Below the shipped --min-download=5mbit, on the cloud's traffic
		// only: the kubelet's path to its API server stays whole.
		slow = shaper.Impairment{Rate: 1 * units.Mbit, Targets: []netip.Prefix{netip.PrefixFrom(cloud.Address, 32)}}
		Expect(sh.Apply(ctx, target, slow)).To(Succeed())
		DeferCleanup(func() { _ = sh.Clear(context.Background(), target) })

		Expect(clusters.DeployRuntime(ctx, cluster, kind.RuntimeSpec{Image: ref, Cloud: cloud.Address, SinkToken: token})).To(Succeed())
		// The shared cluster's other specs run their own runtime on the
		// nodes' network: the DaemonSet's pods must be gone (port 8474
		// free) before they do, whatever order the specs run in.
		DeferCleanup(func() {
			ctx := context.Background()
			err := cs.CoreV1().Namespaces().Delete(ctx, "edgefault-system", metav1.DeleteOptions{})
			Expect(err == nil || apierrors.IsNotFound(err)).To(BeTrue(), "delete namespace edgefault-system: %v", err)
			Eventually(func() bool {
				_, err := cs.CoreV1().Namespaces().Get(ctx, "edgefault-system", metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(BeTrue(), "namespace edgefault-system is still there")
		})
	})

	// pod is the DaemonSet's pod on the worker.
	pod := func() *corev1.Pod {
		GinkgoHelper()
		list, err := cs.CoreV1().Pods("edgefault-system").List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=edgeguard", FieldSelector: "spec.nodeName=" + worker.Name,
		})
		Expect(err).NotTo(HaveOccurred())
		if len(list.Items) != 1 {
			return nil
		}
		return &list.Items[0]
	}
	sidecar := func(p *corev1.Pod) corev1.ContainerStatus {
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == "edgeguard" {
				return s
			}
		}
		return corev1.ContainerStatus{}
	}
	workload := func(p *corev1.Pod) corev1.ContainerStatus {
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "workload" {
				return s
			}
		}
		return corev1.ContainerStatus{}
	}
	ready := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	// events reads one of the node's event logs (hostPath on the node's
	// disk) and returns the event names in order.
	events := func(path string) []string {
		b, err := kind.ReadNodeFile(ctx, worker.Name, path)
		if err != nil {
			return nil
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Event string `json:"event"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Event != "" {
				names = append(names, e.Event)
			}
		}
		return names
	}

	// On failure, what the kubelet said: the pod's statuses and the
	// namespace's events.
	AfterEach(func() {
		if !CurrentSpecReport().Failed() {
			return
		}
		if p := pod(); p != nil {
			b, _ := json.MarshalIndent(p.Status, "", "  ")
			GinkgoWriter.Printf("pod %s status:\n%s\n", p.Name, b)
		}
		// And what the gate did: its last events.
		if b, err := kind.ReadNodeFile(ctx, worker.Name, "/var/lib/edgeguard/events.jsonl"); err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			GinkgoWriter.Printf("the gate's last events:\n%s\n", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		evs, err := cs.CoreV1().Events("edgefault-system").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				GinkgoWriter.Printf("event %s %s/%s: %s %s\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	})

	It("holds the workload behind the sidecar gate while the worker is throttled", func() {
		Eventually(func(g Gomega) {
			p := pod()
			g.Expect(p).NotTo(BeNil())
			g.Expect(sidecar(p).State.Running).NotTo(BeNil(), "the sidecar runs")
		}, 3*time.Minute, time.Second).Should(Succeed())
		// Held: the gate measures 1 Mbit/s against 5, the startup probe
		// fails, the workload container is never started.
		Consistently(func(g Gomega) {
			p := pod()
			g.Expect(sidecar(p).Started).NotTo(HaveValue(BeTrue()), "the startup probe is the gate: it fails while the link is slow")
			g.Expect(workload(p).State.Running).To(BeNil(), "the workload must not start behind a shut gate")
			g.Expect(ready(p)).To(BeFalse())
			g.Expect(sidecar(p).RestartCount).To(BeZero(), "a slow link never restarts the sidecar")
		}, 30*time.Second, 2*time.Second).Should(Succeed())
		Expect(events("/var/lib/edgeguard/events.jsonl")).To(ContainElement(Or(Equal("probe"), Equal("fulltest"))), "the gate measured the link")
	})

	It("releases it when the link is restored", func() {
		start := time.Now()
		Expect(sh.Clear(ctx, target)).To(Succeed())
		Eventually(func(g Gomega) {
			p := pod()
			g.Expect(workload(p).State.Running).NotTo(BeNil())
			g.Expect(ready(p)).To(BeTrue())
		}, 2*time.Minute, time.Second).Should(Succeed())
		GinkgoWriter.Printf("workload released %s after the restore\n", time.Since(start).Round(100*time.Millisecond))
		Eventually(func() []string { return events("/var/lib/edgeguard-workload/events.jsonl") }, time.Minute, time.Second).Should(ContainElement("fetched"))
	})

	It("pauses the workload and leaves Service endpoints when throttled again, without a restart, and resumes", func() {
		Expect(sh.Apply(ctx, target, slow)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(ready(pod())).To(BeFalse(), "readiness follows the gate")
			g.Expect(events("/var/lib/edgeguard-workload/events.jsonl")).To(ContainElement("paused"))
		}, 2*time.Minute, time.Second).Should(Succeed())
		p := pod()
		Expect(workload(p).State.Running).NotTo(BeNil(), "the workload pauses; it is not stopped")
		Expect(sidecar(p).RestartCount).To(BeZero(), "liveness never follows the link")
		Expect(workload(p).RestartCount).To(BeZero())

		Expect(sh.Clear(ctx, target)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(ready(pod())).To(BeTrue())
			g.Expect(events("/var/lib/edgeguard-workload/events.jsonl")).To(ContainElement("resumed"))
		}, 2*time.Minute, time.Second).Should(Succeed())
		Expect(sidecar(pod()).RestartCount).To(BeZero())
	})

	It("keeps the cloud's evidence on this machine", func() {
		b, err := os.ReadFile(filepath.Join(cloud.Dir, "cloud-speedserver.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring(worker.Address.String()), "the speed server saw the worker's probes")
	})
})

func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
