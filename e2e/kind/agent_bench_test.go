package kinde2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The benchmark of issue "existing clusters": the time from the harness's
// request to the qdisc in force on the node (seen by netlink in the
// node's namespace, not taken from the agent's answer), through the node
// agent and the API server, on one node and on two at once, against the
// shaper applying the same impairment directly over netlink in the same
// run. make bench runs it (EDGEFAULT_BENCH=1).
var _ = Describe("the node agent's latency", Ordered, func() {
	It("puts an impairment in force through the API server, against a direct netlink apply", func(ctx SpecContext) {
		if os.Getenv("EDGEFAULT_BENCH") == "" {
			Skip("a benchmark, not a test: make bench runs it (EDGEFAULT_BENCH=1)")
		}
		const n = 50
		// The harness's own client of the cluster (its rate limits).
		p, err := existing.NewProvider(existing.WithKubeconfig(cluster.Kubeconfig), existing.WithLedger(led))
		Expect(err).NotTo(HaveOccurred())
		cs, err := p.Client()
		Expect(err).NotTo(HaveOccurred())
		ref, archive, err := kind.EdgeguardImage(GinkgoT().TempDir(), edgeguard)
		Expect(err).NotTo(HaveOccurred())
		Expect(kind.LoadDockerImage(ctx, archive)).To(Succeed())
		Expect(clusters.LoadImage(ctx, cluster, archive)).To(Succeed())
		var nodes []string
		for _, nd := range cluster.Nodes {
			nodes = append(nodes, nd.Name)
			_, err := cs.CoreV1().Nodes().Patch(ctx, nd.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"edgefault.io/role":"node"}}}`), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() {
				_, _ = cs.CoreV1().Nodes().Patch(context.Background(), nd.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"edgefault.io/role":null}}}`), metav1.PatchOptions{})
			})
		}
		token, id := existing.NewToken(), existing.NewRunID("bench")
		Expect(existing.Deploy(ctx, cs, existing.Run{ID: id, Nodes: nodes, Image: ref, Token: token})).To(Succeed())
		DeferCleanup(func() { Expect(existing.Remove(context.Background(), cs, id, 2*time.Minute)).To(Succeed()) })
		renewing, stop := context.WithCancel(context.Background())
		DeferCleanup(stop)
		go func() { _ = existing.Renew(renewing, cs) }()
		agents := existing.NewAgents(cs, token)
		Expect(agents.WaitLive(ctx, nodes, 3*time.Minute)).To(Succeed())

		// Egress at 10 Mbit/s towards a documentation address nothing
		// sends to: a real qdisc tree, no traffic disturbed.
		imp := shaper.Impairment{Rate: 10 * shaper.Mbit, Direction: shaper.Egress, Targets: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}}
		handles := map[string]*netlink.Handle{}
		for _, nd := range nodes {
			pid, err := kind.ContainerPID(ctx, nd)
			Expect(err).NotTo(HaveOccurred())
			ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid))
			Expect(err).NotTo(HaveOccurred())
			h, err := netlink.NewHandleAt(ns)
			Expect(err).NotTo(HaveOccurred())
			ns.Close()
			DeferCleanup(h.Close)
			handles[nd] = h
		}
		// inForce: eth0 has a root htb (shaped) or not (cleared).
		inForce := func(node string) bool {
			l, err := handles[node].LinkByName("eth0")
			Expect(err).NotTo(HaveOccurred())
			qs, err := handles[node].QdiscList(l)
			Expect(err).NotTo(HaveOccurred())
			return slices.ContainsFunc(qs, func(q netlink.Qdisc) bool {
				return q.Attrs().Parent == netlink.HANDLE_ROOT && q.Type() == "htb"
			})
		}
		waitFor := func(want bool, nodes ...string) {
			GinkgoHelper()
			deadline := time.Now().Add(30 * time.Second)
			for _, nd := range nodes {
				for inForce(nd) != want {
					Expect(time.Now().Before(deadline)).To(BeTrue(), "node %s's qdisc never became %v", nd, want)
					time.Sleep(time.Millisecond)
				}
			}
		}
		measure := func(apply, clear func(), nodes ...string) []time.Duration {
			var ds []time.Duration
			for range n {
				start := time.Now()
				apply()
				waitFor(true, nodes...)
				ds = append(ds, time.Since(start))
				clear()
				waitFor(false, nodes...)
			}
			return ds
		}
		worker := nodes[len(nodes)-1]
		dir := filepath.Join(GinkgoT().TempDir(), "state")
		sh, err := shaper.New(shaper.WithStateDir(dir))
		Expect(err).NotTo(HaveOccurred())
		defer sh.Close()
		direct := shaper.Target{Link: shaper.Link{Netns: fmt.Sprintf("/proc/%d/ns/net", mustPID(ctx, worker)), Name: "eth0"}}
		base := measure(func() { Expect(sh.Apply(ctx, direct, imp)).To(Succeed()) }, func() { Expect(sh.Clear(ctx, direct)).To(Succeed()) }, worker)
		one := measure(func() { Expect(agents.Apply(ctx, worker, imp)).To(Succeed()) }, func() { Expect(agents.Clear(ctx, worker)).To(Succeed()) }, worker)
		both := func(f func(string) error) func() {
			return func() {
				var wg sync.WaitGroup
				errs := make([]error, len(nodes))
				for i, nd := range nodes {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = f(nd) }()
				}
				wg.Wait()
				for _, err := range errs {
					Expect(err).NotTo(HaveOccurred())
				}
			}
		}
		two := measure(both(func(nd string) error { return agents.Apply(ctx, nd, imp) }), both(func(nd string) error { return agents.Clear(ctx, nd) }), nodes...)

		stats := func(ds []time.Duration) (time.Duration, time.Duration) {
			s := slices.Clone(ds)
			slices.Sort(s)
			return s[len(s)/2], s[(len(s)*95+99)/100-1]
		}
		fmt.Fprintf(GinkgoWriter, "\nrequest → qdisc in force on the node (%d each, seen by netlink in the node's namespace)\n", n)
		fmt.Fprintf(GinkgoWriter, "%-46s %10s %10s\n", "path", "median", "p95")
		bm, _ := stats(base)
		for _, r := range []struct {
			name string
			ds   []time.Duration
		}{{"direct netlink apply (baseline)", base}, {"agent through the API server, 1 node", one}, {"agent through the API server, 2 nodes at once", two}} {
			m, p := stats(r.ds)
			fmt.Fprintf(GinkgoWriter, "%-46s %10v %10v   %.1f× the baseline's median\n", r.name, m.Round(100*time.Microsecond), p.Round(100*time.Microsecond), float64(m)/float64(bm))
		}
		m1, _ := stats(one)
		Expect(m1).To(BeNumerically("<", time.Second), "an impairment through the agent took a median of %v", m1)
	})
})

func mustPID(ctx context.Context, container string) int {
	GinkgoHelper()
	pid, err := kind.ContainerPID(ctx, container)
	Expect(err).NotTo(HaveOccurred())
	return pid
}
