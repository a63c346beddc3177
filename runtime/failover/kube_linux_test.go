package failover_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/edgefault/edgefault/scenarios"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgefault/edgefault/shaper"
	"net/url"
)

// The factory's building-A gateway loses its uplink: its runtime, with
// the gateway's own identity in the site's real cluster, labels, taints
// and cordons its Node and drains it (the Deployment's pods move to nodes
// that still have an uplink; the DaemonSet's pod stays); after the restore
// and the hold-down it takes its marks back off.
func TestGatewayMarksAndDrainsItsNode(t *testing.T) {
	ctx := context.Background()
	f := fleet(t, "fk", []scenarios.Site{factory()}, withCluster()...)
	sc, err := f.Cluster("factory")
	if err != nil {
		t.Fatal(err)
	}
	gwA, _ := f.NetnsMember("gw-a")
	cloud, _ := f.NetnsMember("cloud")
	ln, err := traffic.Knock(cloud.Namespace, cloud.Address+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := func(kubeconfig, ns string) *kubernetes.Clientset { return kubeClient(t, kubeconfig, ns) }
	admin := client(sc.Admin, gwA.Namespace)
	self := client(sc.Nodes["gw-a"], gwA.Namespace) // the gateway's own identity

	// A Deployment over the site's nodes and a DaemonSet that tolerates
	// the uplink taint (as deploy/ does).
	labels := map[string]string{"app": "line"}
	four := int32(6)
	pod := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "fake"}},
		Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}}}
	if _, err := admin.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "line"},
		Spec: appsv1.DeploymentSpec{Replicas: &four, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dsPod := *pod.DeepCopy()
	dsPod.Tolerations = append(dsPod.Tolerations, corev1.Toleration{Key: failover.UplinkKey, Operator: corev1.TolerationOpExists})
	dl := map[string]string{"app": "edgeguard"}
	if _, err := admin.AppsV1().DaemonSets("default").Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "edgeguard"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dl}, Spec: dsPod}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := func(app, node string) int {
		n := kubetest.RunningByNode(t, admin, "app="+app)
		if node == "" {
			total := 0
			for _, c := range n {
				total += c
			}
			return total
		}
		return n[node]
	}
	kubetest.Eventually(t, 60*time.Second, "the Deployment and the DaemonSet to run", func() bool {
		return running("line", "") == 6 && running("line", "gw-a") > 0 && running("edgeguard", "gw-a") == 1
	})

	fo, err := failover.New(failover.Config{Primary: netip.MustParseAddr(cloud.Address), Targets: []string{ln.Addr().String()},
		Interval: 200 * time.Millisecond, HoldDown: 3 * time.Second, Netns: gwA.Namespace, Node: "gw-a",
		Kube: &failover.Kube{Client: self, Node: "gw-a", Actions: failover.Actions{Label: true, Taint: true, Cordon: true, Drain: true}}})
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go fo.Run(fctx)
	kubetest.Eventually(t, 10*time.Second, "failover to settle on the primary", func() bool {
		st := fo.Status()
		return st.State == failover.Primary && st.Marked
	})

	s := &site{f: f}
	s.sh, _ = f.Shaper()
	defer s.sh.Close()
	s.cut(t, "gw-a", true)
	cut := time.Now()
	kubetest.Eventually(t, 15*time.Second, "gw-a to be marked and drained", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "gw-a", metav1.GetOptions{})
		if err != nil || n.Labels[failover.UplinkKey] != "down" || !n.Spec.Unschedulable {
			return false
		}
		tainted := false
		for _, tt := range n.Spec.Taints {
			tainted = tainted || tt.Key == failover.UplinkKey
		}
		return tainted && fo.Status().Marked
	})
	t.Logf("gw-a tagged %s after the cut", time.Since(cut).Round(time.Millisecond))
	kubetest.Eventually(t, 60*time.Second, "the Deployment's pods to leave gw-a and run elsewhere", func() bool {
		return running("line", "gw-a") == 0 && running("line", "") == 6
	})
	if running("edgeguard", "gw-a") != 1 {
		t.Fatal("the runtime's DaemonSet pod was evicted from gw-a")
	}
	evs, _ := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=gw-a"})
	reasons := map[string]int{}
	for _, e := range evs.Items {
		reasons[e.Reason]++
	}
	if reasons["UplinkDown"] != 1 || reasons["Drained"] < 1 {
		t.Fatalf("events on gw-a: %v", reasons)
	}

	s.cut(t, "gw-a", false)
	kubetest.Eventually(t, 20*time.Second, "gw-a's marks to come off after the hold-down", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "gw-a", metav1.GetOptions{})
		return err == nil && n.Labels[failover.UplinkKey] == "" && !n.Spec.Unschedulable && len(n.Spec.Taints) == 0 && fo.Status().State == failover.Primary
	})
	evs, _ = admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=gw-a"})
	restored := 0
	for _, e := range evs.Items {
		if e.Reason == "UplinkRestored" {
			restored++
		}
	}
	if restored != 1 {
		t.Fatalf("%d UplinkRestored events, want 1", restored)
	}
	cancel()

	// The API unreachable while acting: device a1 fails over to building
	// B's gateway at once, but cannot mark its Node while its path to the
	// site's API (on gw-a's LAN address) is cut; the marks go on once the
	// API answers again, exactly once.
	a1, _ := f.NetnsMember("a1")
	gwB, _ := f.NetnsMember("gw-b")
	u, _ := url.Parse(sc.URL)
	api := netip.MustParseAddr(u.Hostname())
	dev, err := failover.New(failover.Config{Primary: netip.MustParseAddr(gwA.Address), Alternate: netip.MustParseAddr(gwB.Address),
		Targets: []string{ln.Addr().String()}, Interval: 200 * time.Millisecond, HoldDown: 3 * time.Second, Netns: a1.Namespace, Node: "a1",
		Kube: &failover.Kube{Client: client(sc.Nodes["a1"], a1.Namespace), Node: "a1", Actions: failover.Actions{Label: true, Taint: true}}})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	go dev.Run(dctx)
	kubetest.Eventually(t, 10*time.Second, "a1 settled on the primary", func() bool { st := dev.Status(); return st.State == failover.Primary && st.Marked })
	a1T, err := f.Target("a1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sh.Apply(ctx, a1T, shaper.Impairment{Outage: true, Targets: []netip.Prefix{netip.PrefixFrom(api, 32)}}); err != nil {
		t.Fatal(err)
	}
	s.cut(t, "gw-a", true)
	kubetest.Eventually(t, 10*time.Second, "a1 to route through gw-b while the API is out of reach", func() bool {
		st := dev.Status()
		return st.State == failover.Alternate && !st.Marked
	})
	kubetest.Eventually(t, 20*time.Second, "a failed attempt to mark a1 while its API path is cut", func() bool { return dev.Status().KubeError != "" })
	if n, _ := admin.CoreV1().Nodes().Get(ctx, "a1", metav1.GetOptions{}); n.Labels[failover.UplinkKey] != "" {
		t.Fatal("a1 labelled through a cut API path")
	}
	if err := s.sh.Clear(ctx, a1T); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 20*time.Second, "a1's marks once the API answers", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "a1", metav1.GetOptions{})
		return err == nil && n.Labels[failover.UplinkKey] == "down" && len(n.Spec.Taints) == 1 && dev.Status().Marked
	})
	evs, _ = admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=a1"})
	down := 0
	for _, e := range evs.Items {
		if e.Reason == "UplinkDown" {
			down++
		}
	}
	if down != 1 {
		t.Fatalf("%d UplinkDown events on a1, want exactly 1", down)
	}
	s.cut(t, "gw-a", false)
}

// A one-node store: its uplink cut, the node is marked degraded in its
// cluster, nothing is drained (the only other node is its own gateway,
// behind the same cut uplink), and the local service keeps answering.
func TestStoreIsMarkedButNotDrained(t *testing.T) {
	ctx := context.Background()
	f := fleet(t, "fs", []scenarios.Site{{Name: "store", Gateway: &scenarios.Gateway{Name: "store-gw"}, Nodes: []scenarios.Node{{Name: "pos"}}}}, withCluster()...)
	sc, _ := f.Cluster("store")
	pos, _ := f.NetnsMember("pos")
	gw, _ := f.NetnsMember("store-gw")
	cloud, _ := f.NetnsMember("cloud")
	target, err := traffic.Knock(cloud.Namespace, cloud.Address+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	local, err := traffic.Knock(pos.Namespace, pos.Address+":0") // the store's point of sale
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	mk := func(kubeconfig string) *kubernetes.Clientset { return kubeClient(t, kubeconfig, pos.Namespace) }
	admin := mk(sc.Admin)
	one := int32(1)
	labels := map[string]string{"app": "till"}
	if _, err := admin.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "till"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": "pos"},
				Containers:   []corev1.Container{{Name: "c", Image: "fake"}}, Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 60*time.Second, "the till to run on pos", func() bool { return kubetest.RunningByNode(t, admin, "app=till")["pos"] == 1 })
	fo, err := failover.New(failover.Config{Primary: netip.MustParseAddr(gw.Address), Targets: []string{target.Addr().String()},
		Interval: 200 * time.Millisecond, HoldDown: 3 * time.Second, Netns: pos.Namespace, Node: "pos",
		Kube: &failover.Kube{Client: mk(sc.Nodes["pos"]), Node: "pos", Actions: failover.Actions{Label: true, Taint: true, Cordon: true, Drain: true}}})
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go fo.Run(fctx)
	kubetest.Eventually(t, 10*time.Second, "pos settled", func() bool { st := fo.Status(); return st.State == failover.Primary && st.Marked })
	s := &site{f: f}
	s.sh, _ = f.Shaper()
	defer s.sh.Close()
	s.cut(t, "store-gw", true)
	kubetest.Eventually(t, 15*time.Second, "pos degraded and marked", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "pos", metav1.GetOptions{})
		return err == nil && fo.Status().State == failover.Degraded && fo.Status().Marked && n.Labels[failover.UplinkKey] == "down"
	})
	time.Sleep(2 * time.Second)
	if kubetest.RunningByNode(t, admin, "app=till")["pos"] != 1 {
		t.Fatal("the till was drained off the store's only node")
	}
	if !reaches(pos.Namespace, local.Addr().String()) {
		t.Fatal("the local service stopped answering")
	}
	if fo.IsOpen() {
		t.Fatal("a degraded node says its link is usable")
	}
}

// withCluster gives the fleet's sites control planes that schedule: the
// tests' Deployments need pods to drain.
func withCluster() []netns.Option {
	return []netns.Option{netns.WithControlPlanes(k8sbin.Cache{Dir: k8sbin.DefaultDir()}), netns.WithScheduling()}
}

// kubeClient is a client from kubeconfig whose connections start in
// namespace ns (where the runtime it stands for runs).
func kubeClient(t *testing.T, kubeconfig, ns string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial, cfg.Timeout = nsdo.DialContext(ns), 5*time.Second
	return kubernetes.NewForConfigOrDie(cfg)
}
