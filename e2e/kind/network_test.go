package kinde2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgefault/edgefault/clusters/kind"
)

var _ = Describe("the pod network", func() {
	It("is flannel on every node, and a pod reaches pods on the other node", func() {
		ctx := context.Background()
		cs, err := cluster.Client()
		Expect(err).NotTo(HaveOccurred())

		ds, err := cs.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(ds.Status.NumberAvailable).To(BeEquivalentTo(len(cluster.Nodes)))
		// host-gw: each node routes every other node's pod range to it.
		for _, n := range cluster.Nodes {
			out, err := exec.Command("docker", "exec", n.Name, "ip", "-4", "route").CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			routes := string(out)
			for _, o := range cluster.Nodes {
				if o.Name != n.Name {
					Expect(routes).To(ContainSubstring(fmt.Sprintf("%s via %s", o.PodCIDR.Masked(), o.Address)), "node %s", n.Name)
				}
			}
		}

		// A pod (on the pod network, not the node's) on one node asks
		// each CoreDNS pod on the other nodes for its health.
		dns, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		Expect(err).NotTo(HaveOccurred())
		Expect(dns.Items).NotTo(BeEmpty())
		on := cluster.Nodes[1].NodeName
		if dns.Items[0].Spec.NodeName == on {
			on = cluster.Nodes[0].NodeName
		}
		var targets []string
		for _, p := range dns.Items {
			if p.Spec.NodeName != on && p.Status.PodIP != "" {
				targets = append(targets, p.Status.PodIP)
			}
		}
		Expect(targets).NotTo(BeEmpty())
		script := "set -e\n"
		for _, ip := range targets {
			script += fmt.Sprintf(`exec 3<>/dev/tcp/%s/8080; printf 'GET /health HTTP/1.0\r\n\r\n' >&3; echo "%s $(tail -n1 <&3)"; exec 3>&-`+"\n", ip, ip)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "podnet-", Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeName:      on,
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "probe", Image: kind.FlannelImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"timeout", "30", "bash", "-c", script},
				}},
			},
		}
		pod, err = cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			_ = cs.CoreV1().Pods("default").Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
		})
		Eventually(func() corev1.PodPhase {
			p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return ""
			}
			pod = p
			return p.Status.Phase
		}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Or(Equal(corev1.PodSucceeded), Equal(corev1.PodFailed)))
		logs, err := cs.CoreV1().Pods("default").GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(pod.Status.Phase).To(Equal(corev1.PodSucceeded), string(logs))
		Expect(pod.Status.PodIP).To(HavePrefix("10.244."), "the probe ran on the pod network")
		for _, ip := range targets {
			Expect(strings.Split(strings.TrimSpace(string(logs)), "\n")).To(ContainElement(ip + " OK"))
		}
	})
})
