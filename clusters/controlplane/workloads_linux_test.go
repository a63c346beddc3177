package controlplane_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/ledger"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// With the controller manager, the scheduler and kwok, a Deployment spreads
// over the site's nodes, a DaemonSet runs on each, and cordoning and
// draining a node moves its pods to the others.
func TestDeploymentsDaemonSetsAndDrain(t *testing.T) {
	dir := t.TempDir()
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{Site: "store", Dir: filepath.Join(dir, "cp"), Bin: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Ledger: l, Owner: "test", Workloads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	defer func() {
		if t.Failed() {
			for _, n := range []string{"kube-controller-manager", "kube-scheduler", "kwok"} {
				b, _ := os.ReadFile(filepath.Join(dir, "cp", n+".log"))
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 8 {
					lines = lines[len(lines)-8:]
				}
				t.Logf("%s log:\n%s", n, strings.Join(lines, "\n"))
			}
			pods, _ := cp.Client()
			if pods != nil {
				if pl, err := pods.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{}); err == nil {
					for _, p := range pl.Items {
						t.Logf("pod %s node=%q phase=%s", p.Name, p.Spec.NodeName, p.Status.Phase)
					}
				}
			}
		}
	}()
	cs, _ := cp.Client()
	nodes := []string{"store-n1", "store-n2", "store-n3"}
	for _, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"edgefault.io/site": "store", "kubernetes.io/hostname": n},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}}}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Ready, and untainted: the node lifecycle controller lifts the
	// not-ready taint a moment after kwok reports Ready.
	kubetest.Eventually(t, 60*time.Second, "kwok to make the nodes Ready and untainted", func() bool {
		ns, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		ready := 0
		for _, n := range ns.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && len(n.Spec.Taints) == 0 {
					ready++
				}
			}
		}
		return ready == len(nodes)
	})
	three := int32(6)
	honor := corev1.NodeInclusionPolicyHonor
	labels := map[string]string{"app": "pos"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pos", Image: "edgefault/pos:local"}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
				LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
				// A cordoned node (tainted unschedulable) is no domain to
				// spread over, so a drain can complete.
				NodeTaintsPolicy: &honor}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "pos"}, Spec: appsv1.DeploymentSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dsLabels := map[string]string{"app": "edgeguard"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "edgeguard"}, Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dsLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dsLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "edgeguard", Image: "edgefault/edgeguard:local"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}}}}
	if _, err := cs.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 60*time.Second, "6 pos pods spread 2 per node and a DaemonSet pod on each node", func() bool {
		byNode, dsNode := kubetest.RunningByNode(t, cs, "app=pos"), kubetest.RunningByNode(t, cs, "app=edgeguard")
		for _, n := range nodes {
			if byNode[n] != 2 || dsNode[n] != 1 {
				return false
			}
		}
		return true
	})
	// Cordon and drain store-n1 as kubectl drain --ignore-daemonsets would.
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "store-n1", types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=store-n1"})
	evicted := 0
	for _, p := range pods.Items {
		if p.Labels["app"] == "edgeguard" {
			continue // DaemonSet pods stay
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		if err := cs.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev); err != nil {
			t.Fatalf("evict %s: %v", p.Name, err)
		}
		evicted++
	}
	if evicted != 2 {
		t.Fatalf("evicted %d pods from store-n1, want its 2 pos pods", evicted)
	}
	kubetest.Eventually(t, 60*time.Second, "the drained pods to land on the other nodes", func() bool {
		byNode := kubetest.RunningByNode(t, cs, "app=pos")
		return byNode["store-n1"] == 0 && byNode["store-n2"]+byNode["store-n3"] == 6
	})
	if kubetest.RunningByNode(t, cs, "app=edgeguard")["store-n1"] != 1 {
		t.Error("the DaemonSet pod left the drained node")
	}
}
