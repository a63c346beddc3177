package kinde2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/units"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A site on kind reaches its cloud as on the embedded fleet: the cloud on a
// WAN network, the site's gateway a router container between the kind
// network and the WAN, the nodes' cloud route through it. Shaping the
// gateway's WAN leg slows the whole site's cloud traffic and leaves the
// kubelet's path to its API server alone.
var _ = Describe("a site behind a gateway", Ordered, func() {
	var (
		ctx    = context.Background()
		worker kind.Node
		wan    *kind.WAN
		cloud  *kind.Cloud
		gw     *kind.Gateway
		client *http.Client
	)

	BeforeAll(func() {
		worker = cluster.Nodes[1]
		var err error
		wan, err = clusters.CreateWAN(ctx, cluster.Name+"-wan")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.RemoveWAN(context.Background(), wan)).To(Succeed()) })

		ref, archive, err := kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(ctx, archive)).To(Succeed())
		creds, err := json.Marshal(sink.Credentials{Sites: []sink.Site{{Name: "wan", Token: newToken(), Members: []string{worker.Name}}}, Readers: []string{newToken()}})
		Expect(err).NotTo(HaveOccurred())
		cloud, err = clusters.StartCloud(ctx, cluster, kind.CloudSpec{Image: ref, Credentials: creds, Name: cluster.Name + "-wan-cloud", Network: wan.Name})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.StopCloud(context.Background(), cloud)).To(Succeed()) })
		Expect(wan.Subnet.Contains(cloud.Address)).To(BeTrue(), "the cloud is on the WAN")

		gw, err = clusters.StartGateway(ctx, cluster, kind.GatewaySpec{Name: "router", WAN: wan, Image: nodeImage})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(clusters.StopGateway(context.Background(), gw)).To(Succeed()) })
		Expect(kind.RouteVia(ctx, worker.Name, wan.Subnet, gw)).To(Succeed())
		DeferCleanup(func() { Expect(kind.RemoveRoute(context.Background(), worker.Name, wan.Subnet)).To(Succeed()) })
		Expect(kind.WaitRoute(ctx, worker.Name, cloud.Address, 30*time.Second)).To(Succeed())

		pid, err := kind.ContainerPID(ctx, worker.Name)
		Expect(err).NotTo(HaveOccurred())
		// Requests made from inside the worker's network namespace, as
		// its workloads make them.
		client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: nsdo.DialContext(fmt.Sprintf("/proc/%d/ns/net", pid)), DisableKeepAlives: true}}
	})

	// download fetches n bytes of the speed server from the worker and
	// returns the goodput in bit/s.
	download := func(n int) float64 {
		GinkgoHelper()
		start := time.Now()
		resp, err := client.Get(fmt.Sprintf("http://%s:%d/speedtest/random%dx%d.jpg", cloud.Address, kind.SpeedPort, n/2000, 1000))
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		got, err := io.Copy(io.Discard, resp.Body)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(BeNumerically("==", n))
		return float64(got*8) / time.Since(start).Seconds()
	}

	It("routes the worker's cloud traffic through the gateway, masqueraded", func() {
		resp, err := client.Get(fmt.Sprintf("http://%s:%d/speedtest/latency.txt", cloud.Address, kind.SpeedPort))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		download(200_000)
		Eventually(func() string {
			b, _ := os.ReadFile(filepath.Join(cloud.Dir, "cloud-speedserver.jsonl"))
			return string(b)
		}, 10*time.Second, 200*time.Millisecond).Should(And(
			ContainSubstring(`"remote":"`+gw.WANAddress.String()+`"`),
			Not(ContainSubstring(`"remote":"`+worker.Address.String()+`"`)),
		), "the cloud sees the gateway's WAN address, never the node's")
	})

	It("shapes the whole site at the gateway's WAN leg, and not the kubelet's path", func() {
		fast := download(2_000_000)
		GinkgoWriter.Printf("unshaped: %.1f Mbit/s\n", fast/1e6)
		Expect(fast).To(BeNumerically(">", 20e6))

		sh, err := shaper.New(shaper.WithLedger(led, owner))
		Expect(err).NotTo(HaveOccurred())
		defer sh.Close()
		target, err := kind.GatewayTarget(ctx, gw)
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, target, shaper.Impairment{Rate: 2 * units.Mbit})).To(Succeed())
		DeferCleanup(func() { _ = sh.Clear(context.Background(), target) })
		slow := download(1_000_000)
		GinkgoWriter.Printf("gateway at 2 Mbit/s: %.2f Mbit/s\n", slow/1e6)
		Expect(slow).To(And(BeNumerically("<", 2.6e6), BeNumerically(">", 0.5e6)))

		// The kubelet's path stays whole: its Node stays Ready and its
		// lease is renewed while the site is throttled.
		cs, err := cluster.Client()
		Expect(err).NotTo(HaveOccurred())
		Consistently(func(g Gomega) {
			n, err := cs.CoreV1().Nodes().Get(ctx, worker.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(nodeReady(n)).To(BeTrue())
		}, 15*time.Second, time.Second).Should(Succeed())

		Expect(sh.Clear(ctx, target)).To(Succeed())
		Expect(download(2_000_000)).To(BeNumerically(">", 20e6))
	})
})

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
