package kinde2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/shaper"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The kind cluster as an existing cluster, through its kubeconfig: what a
// run deploys (the node agent as a DaemonSet, its Lease, ConfigMap and
// Secret), the agent reached through the API server's pod proxy cutting
// the worker's uplink to the cloud (real datagrams stop), refusing a
// request without the run's token, clearing the cut on its own once the
// run's Lease is no longer renewed (as when the harness is killed), and
// nothing of the harness left after.
var _ = Describe("an existing cluster's node agent", Ordered, func() {
	It("shapes a node through the API server, refuses what is not the run's, clears when the lease lapses, and leaves nothing", func(ctx SpecContext) {
		cs, err := cluster.Client()
		Expect(err).NotTo(HaveOccurred())
		Expect(cluster.Nodes).To(HaveLen(2))
		cpNode, worker := cluster.Nodes[0], cluster.Nodes[1]

		ref, archive, err := kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(ctx, archive)).To(Succeed())
		Expect(clusters.LoadImage(ctx, cluster, archive)).To(Succeed())
		creds, err := json.Marshal(sink.Credentials{Sites: []sink.Site{{Name: "e2e", Token: newToken(), Members: []string{worker.Name}}}, Readers: []string{newToken()}})
		Expect(err).NotTo(HaveOccurred())
		cloud, err := clusters.StartCloud(ctx, cluster, kind.CloudSpec{Image: ref, Credentials: creds})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.StopCloud(context.Background(), cloud)).To(Succeed()) })

		// The user's labels: the worker plays a node, the control plane
		// the cloud (never shaped); taken off again at the end.
		label := func(node, patch string) {
			GinkgoHelper()
			// Not the spec's context: the labels come off after it ends.
			_, err := cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		label(worker.Name, `{"metadata":{"labels":{"edgefault.io/role":"node","edgefault.io/site":"e2e"}}}`)
		label(cpNode.Name, `{"metadata":{"labels":{"edgefault.io/role":"cloud","edgefault.io/member":"cloud"}}}`)
		DeferCleanup(func() {
			label(worker.Name, `{"metadata":{"labels":{"edgefault.io/role":null}}}`)
			label(cpNode.Name, `{"metadata":{"labels":{"edgefault.io/role":null,"edgefault.io/member":null}}}`)
		})
		mapped, err := existing.Map(ctx, cs)
		Expect(err).NotTo(HaveOccurred())
		Expect(mapped).To(ContainElement(existing.Mapped{Node: worker.Name, Member: worker.Name, Role: "node", Site: "e2e"}))

		token := existing.NewToken()
		start := time.Now()
		Expect(existing.Deploy(ctx, cs, existing.Run{Nodes: []string{worker.Name}, Image: ref, Token: token})).To(Succeed())
		DeferCleanup(func() { _ = existing.Remove(context.Background(), cs, 2*time.Minute) })
		renewing, stopRenewing := context.WithCancel(context.Background())
		DeferCleanup(stopRenewing)
		go func() { _ = existing.Renew(renewing, cs) }()

		var pod, last string
		Eventually(func() bool {
			pods, err := cs.CoreV1().Pods(existing.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + worker.Name})
			if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.Phase != "Running" {
				return false
			}
			pod = pods.Items[0].Name
			return true
		}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(BeTrue(), "the agent's pod never ran on the worker")
		call := func(method, tok string, body any) (int, agent.State) {
			path := "v1/impairments"
			if method != "GET" {
				path += "/uplink"
			}
			req := cs.CoreV1().RESTClient().Verb(method).Namespace(existing.Namespace).Resource("pods").
				Name(fmt.Sprintf("%s:%d", pod, existing.AgentPort)).SubResource("proxy").Suffix(path)
			if tok != "" {
				req = req.SetHeader(agent.TokenHeader, tok)
			}
			if body != nil {
				b, _ := json.Marshal(body)
				req = req.Body(b)
			}
			res := req.Do(ctx)
			var code int
			res.StatusCode(&code)
			raw, err := res.Raw()
			last = fmt.Sprintf("%s: %d %s %v", method, code, raw, err)
			var st agent.State
			_ = json.Unmarshal(raw, &st)
			return code, st
		}
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				logs, err := cs.CoreV1().Pods(existing.Namespace).GetLogs(pod, &corev1.PodLogOptions{}).Do(context.Background()).Raw()
				prev, perr := cs.CoreV1().Pods(existing.Namespace).GetLogs(pod, &corev1.PodLogOptions{Previous: true}).Do(context.Background()).Raw()
				p, _ := cs.CoreV1().Pods(existing.Namespace).Get(context.Background(), pod, metav1.GetOptions{})
				GinkgoWriter.Printf("last answer: %s\nthe agent's pod: %+v\nits log (%v):\n%s\nbefore its restart (%v):\n%s\n", last, p.Status.ContainerStatuses, err, logs, perr, prev)
			}
		})
		Eventually(func() bool {
			code, st := call("GET", token, nil)
			return code == 200 && st.Live && st.Allowed
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeTrue(), "the agent never saw the run live")
		GinkgoWriter.Printf("agent up through the pod proxy %v after the deploy\n", time.Since(start).Round(100*time.Millisecond))

		code, _ := call("GET", "", nil)
		Expect(code).To(Equal(401), "a request without the run's token")
		code, _ = call("PUT", existing.NewToken(), shaper.Impairment{Outage: true})
		Expect(code).To(Equal(401), "a request with another token")

		// The cut targets the cloud alone: the node's path to its API
		// server (and so the agent's) stays whole.
		wpid, err := kind.ContainerPID(ctx, worker.Name)
		Expect(err).NotTo(HaveOccurred())
		cpid, err := kind.ContainerPID(ctx, cloud.Containers[0])
		Expect(err).NotTo(HaveOccurred())
		wn, err := cs.CoreV1().Nodes().Get(ctx, worker.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		var waddr string
		for _, a := range wn.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				waddr = a.Address
			}
		}
		Expect(waddr).NotTo(BeEmpty())
		// From the cloud to the node: a node's uplink has no far end the
		// agent can reach, so a cut drops what arrives (a conversation
		// stalls, as when the link goes, with no local error).
		flows := func() int {
			GinkgoHelper()
			got, err := traffic.UDPTrain(ctx, fmt.Sprintf("/proc/%d/ns/net", cpid), fmt.Sprintf("/proc/%d/ns/net", wpid), waddr+":9912", 50, 200, 500)
			Expect(err).NotTo(HaveOccurred())
			return got
		}
		Expect(flows()).To(BeNumerically(">=", 45), "the uplink did not carry datagrams before the cut")
		asked := time.Now()
		code, st := call("PUT", token, shaper.Impairment{Outage: true, Targets: []netip.Prefix{netip.PrefixFrom(cloud.Address, 32)}})
		Expect(code).To(Equal(200))
		Expect(st.Uplink).NotTo(BeNil())
		GinkgoWriter.Printf("cut in force %v after the request\n", time.Since(asked).Round(time.Millisecond))
		if n := flows(); n != 0 {
			out, _ := exec.Command("docker", "exec", worker.Name, "sh", "-c", "nft list ruleset; tc qdisc show; ip route get "+cloud.Address.String()+"; ip -br link").CombinedOutput()
			Fail(fmt.Sprintf("%d datagrams crossed the cut uplink; on the worker:\n%s", n, out))
		}
		code, _ = call("GET", token, nil)
		Expect(code).To(Equal(200), "the cut reached the agent's own path to the API server")

		// The harness dies: nothing renews the lease (15 s).
		stopRenewing()
		lapsed := time.Now()
		Eventually(func() bool {
			_, st := call("GET", token, nil)
			return st.Uplink == nil && st.Expired == 1
		}).WithTimeout(45*time.Second).WithPolling(500*time.Millisecond).Should(BeTrue(), "the agent kept the cut after the lease lapsed")
		GinkgoWriter.Printf("cleared %v after the harness stopped renewing (lease 15 s)\n", time.Since(lapsed).Round(100*time.Millisecond))
		Expect(flows()).To(BeNumerically(">=", 45), "the uplink did not carry datagrams after the agent cleared it")
		code, _ = call("PUT", token, shaper.Impairment{Outage: true})
		Expect(code).To(Equal(409), "an impairment without a live run")

		Expect(existing.Remove(ctx, cs, 2*time.Minute)).To(Succeed())
		_, err = cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there: %v", existing.Namespace, err)
	})
})
