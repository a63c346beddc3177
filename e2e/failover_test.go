package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Failover through the binary: edgeguard serve on a factory's gateway A
// (marks its Node with its own identity) and on a device behind it
// (switches its route to gateway B), against the site's real cluster.
var _ = Describe("failover through edgeguard serve", Ordered, func() {
	It("switches the device's route and marks the gateway's Node when A's uplink is cut, and undoes both after", func() {
		ctx := context.Background()
		f, cloud, sh := runtimeFleet("ef", []scenarios.Site{{Name: "factory", Buildings: []scenarios.Building{
			{Name: "a", Gateway: scenarios.Gateway{Name: "gw-a"}, Nodes: []scenarios.Node{{Name: "a1"}}},
			{Name: "b", Gateway: scenarios.Gateway{Name: "gw-b"}, Nodes: []scenarios.Node{{Name: "b1"}}},
		}}}, netns.WithControlPlanes(k8sbin.Cache{Dir: k8sbin.DefaultDir()}))
		sc, err := f.Cluster("factory")
		Expect(err).NotTo(HaveOccurred())
		gwA, _ := f.NetnsMember("gw-a")
		gwB, _ := f.NetnsMember("gw-b")
		cm, _ := f.NetnsMember("cloud")
		common := []string{"--min-download=1mbit", "--no-full-test", "--failover-interval=200ms", "--failover-hold-down=3s"}
		gw, err := harness.StartGate(ctx, f, edgeguard, "gw-a", cloud, append(common, "--failover-primary="+cm.Address,
			"--failover-actions=label,taint", "--kubeconfig="+sc.Nodes["gw-a"])...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gw.Stop)
		dev, err := harness.StartGate(ctx, f, edgeguard, "a1", cloud, append(common, "--failover-primary="+gwA.Address, "--failover-alternate="+gwB.Address)...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(dev.Stop)
		state := func(g *harness.Gate) failover.Status {
			var s failover.Status
			_ = g.Get(ctx, "/v1/failover", &s)
			return s
		}
		Eventually(func() bool { s := state(gw); return s.State == failover.Primary && s.Marked }).WithTimeout(20 * time.Second).Should(BeTrue())

		cfg, err := clientcmd.BuildConfigFromFlags("", sc.Admin)
		Expect(err).NotTo(HaveOccurred())
		cfg.Dial = nsdo.DialContext(gwA.Namespace)
		admin := kubernetes.NewForConfigOrDie(cfg)
		label := func() string {
			n, err := admin.CoreV1().Nodes().Get(ctx, "gw-a", metav1.GetOptions{})
			if err != nil {
				return "?"
			}
			return n.Labels[failover.UplinkKey]
		}

		t, err := f.Target("gw-a")
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, t, shaper.Impairment{Outage: true})).To(Succeed())
		Eventually(func() failover.State { return state(dev).State }).WithTimeout(9 * time.Second).Should(Equal(failover.Alternate))
		Eventually(label).WithTimeout(9 * time.Second).Should(Equal("down"))
		Expect(state(gw).State).To(Equal(failover.Degraded))

		Expect(sh.Clear(ctx, t)).To(Succeed())
		Eventually(func() failover.State { return state(dev).State }).WithTimeout(15 * time.Second).Should(Equal(failover.Primary))
		Eventually(label).WithTimeout(15 * time.Second).Should(BeEmpty())
		Expect(state(dev).Switches).To(Equal(2))
	})
})
