package netns_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// clientIn loads a kubeconfig and dials from inside namespace ns, as a
// process on that member would.
func clientIn(t *testing.T, kubeconfig, ns string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	cfg.Dial = nsdo.DialContext(ns)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Every site of the built-in fleet gets its own cluster; every node and
// gateway is a Node there with the model's labels; each member's own
// identity may change its own Node and not another's; a fleet down stops
// every control-plane process.
func TestEverySiteIsACluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces); CI runs as root")
	}
	dir := t.TempDir()
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithControlPlanes(k8sbin.Cache{Dir: k8sbin.DefaultDir()}), netns.WithScheduling())
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("k%d", os.Getpid()%10000)
	ctx := context.Background()
	start := time.Now()
	f, err := p.UpFleet(ctx, name, &scenarios.Default().Spec)
	if err != nil {
		t.Fatal(err)
	}
	down := false
	defer func() {
		if !down {
			_ = p.Down(ctx, name)
		}
	}()
	t.Logf("3 site clusters up in %v", time.Since(start).Round(time.Millisecond))
	for _, site := range []string{"store", "truck", "factory"} {
		sc, err := f.Cluster(site)
		if err != nil {
			t.Fatal(err)
		}
		admin := clientIn(t, sc.Admin, "/run/netns/"+sc.Namespace)
		nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("site %s: %v", site, err)
		}
		var got, want []string
		for _, n := range nodes.Items {
			got = append(got, n.Name+"/"+n.Labels[clusters.LabelRole]+"/"+n.Labels[clusters.LabelSite])
		}
		for _, m := range f.Members() {
			if m.Site == site {
				want = append(want, m.Name+"/"+m.Role+"/"+site)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("site %s nodes %v, want %v", site, got, want)
		}
	}
	sc, _ := f.Cluster("factory")
	// Workloads on the site: a Deployment over the factory's devices, a
	// DaemonSet on every node and gateway, and a drain that moves pods.
	workloadsOnSite(t, clientIn(t, sc.Admin, "/run/netns/"+sc.Namespace), []string{"factory-b1", "factory-a1", "factory-a2", "factory-b2"}, 6)
	a1, _ := f.NetnsMember("factory-a1")
	own := clientIn(t, sc.Nodes["factory-a1"], "/run/netns/"+a1.Namespace)
	patch := []byte(`{"metadata":{"labels":{"uplink":"down"}},"spec":{"taints":[{"key":"edgefault.io/uplink","value":"down","effect":"NoSchedule"}]}}`)
	if _, err := own.CoreV1().Nodes().Patch(ctx, "factory-a1", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("factory-a1 labelling and tainting itself: %v", err)
	}
	if _, err := own.CoreV1().Nodes().Patch(ctx, "factory-a2", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("factory-a1 patching factory-a2: %v, want 403", err)
	}
	if n, _ := own.CoreV1().Nodes().Get(ctx, "factory-a1", metav1.GetOptions{}); n == nil || n.Labels[clusters.LabelBuilding] != "a" || n.Labels[clusters.LabelGateway] != "factory-gw-a" {
		t.Errorf("factory-a1 labels: %+v", n)
	}
	var procs []ledger.Entry
	entries, _ := l.Entries(name)
	for _, e := range entries {
		if e.Kind == ledger.KindProcess && strings.Contains(e.Name, " of site ") {
			procs = append(procs, e)
		}
	}
	if len(procs) != 15 {
		t.Errorf("%d control-plane processes recorded, want 5 per site", len(procs))
	}
	down = true
	if err := p.Down(ctx, name); err != nil {
		t.Fatal(err)
	}
	for _, e := range procs {
		if e.Alive() || ledger.GroupAlive(e.PID) {
			t.Errorf("%s still running after down", e.Name)
		}
	}
}

// workloadsOnSite runs a Deployment on the site's devices (role=node), a
// DaemonSet on all its members, then cordons and drains the first device.
func workloadsOnSite(t *testing.T, cs *kubernetes.Clientset, devices []string, members int) {
	t.Helper()
	ctx := context.Background()
	replicas := int32(len(devices))
	// A cordoned node is no domain to spread over, so a drain completes.
	honor := corev1.NodeInclusionPolicyHonor
	labels := map[string]string{"app": "line"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "line"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{clusters.LabelRole: "node"},
			Containers:   []corev1.Container{{Name: "line", Image: "edgefault/line:local"}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
				NodeTaintsPolicy: &honor}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dsl := map[string]string{"app": "edgeguard"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "edgeguard"}, Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dsl},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dsl}, Spec: corev1.PodSpec{
			Containers:  []corev1.Container{{Name: "edgeguard", Image: "edgefault/edgeguard:local"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}}}}
	if _, err := cs.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 60*time.Second, "one line pod per device and an edgeguard pod on every member", func() bool {
		line, eg := kubetest.RunningByNode(t, cs, "app=line"), kubetest.RunningByNode(t, cs, "app=edgeguard")
		n := 0
		for _, c := range eg {
			n += c
		}
		for _, d := range devices {
			if line[d] != 1 {
				return false
			}
		}
		return n == members
	})
	drained := devices[0]
	if _, err := cs.CoreV1().Nodes().Patch(ctx, drained, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + drained, LabelSelector: "app=line"})
	for _, p := range pods.Items {
		if err := cs.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: "default"}}); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.Eventually(t, 60*time.Second, "the drained pod to land on another device", func() bool {
		line := kubetest.RunningByNode(t, cs, "app=line")
		total := 0
		for _, c := range line {
			total += c
		}
		return line[drained] == 0 && total == len(devices)
	})
	if kubetest.RunningByNode(t, cs, "app=edgeguard")[drained] != 1 {
		t.Error("the DaemonSet pod left the drained node")
	}
}

// By default a site's control plane is lean (etcd, apiserver, kwok), and
// a site that says controlPlane: none gets none while its network works.
func TestLeanSitesAndSitesWithout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces); CI runs as root")
	}
	dir := t.TempDir()
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	p, err := netns.NewProvider(netns.WithLedger(l), netns.WithControlPlanes(k8sbin.Cache{Dir: k8sbin.DefaultDir()}))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("kl%d", os.Getpid()%10000)
	ctx := context.Background()
	f, err := p.UpFleet(ctx, name, &scenarios.FleetSpec{Sites: []scenarios.Site{
		{Name: "shop", Gateway: &scenarios.Gateway{Name: "shop-gw"}, NodeCount: 1},
		{Name: "kiosk", Gateway: &scenarios.Gateway{Name: "kiosk-gw"}, NodeCount: 1, ControlPlane: scenarios.ControlPlaneNone},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Down(ctx, name)
	if got, want := f.SiteComponents("shop"), []string{"etcd", "kube-apiserver", "kwok"}; !slices.Equal(got, want) {
		t.Errorf("shop runs %v, want %v", got, want)
	}
	if got := f.SiteComponents("kiosk"); len(got) != 0 {
		t.Errorf("kiosk said controlPlane: none and runs %v", got)
	}
	if _, err := f.Cluster("kiosk"); err == nil {
		t.Error("kiosk has a cluster")
	}
	if _, err := f.MemberKubeconfig("kiosk-n1"); err == nil {
		t.Error("a node of a site without a control plane has a kubeconfig")
	}
	sc, err := f.Cluster("shop")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sc.Nodes["shop-n1"]); err != nil {
		t.Errorf("shop-n1 has no kubeconfig: %v", err)
	}
}
