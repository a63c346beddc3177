package failover

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/kubetest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A PodDisruptionBudget that refuses every eviction: the drain gives up
// after its bounded retries with an error that says why, never hangs, and
// the node's other marks are applied regardless.
func TestDrainHonoursPDBAndNeverHangs(t *testing.T) {
	ctx := context.Background()
	cp := kubetest.ControlPlane(t, "pdb", true)
	cs, _ := cp.Client()
	for _, n := range []string{"n1", "n2"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/hostname": n, GatewayLabel: "gw-" + n},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}}}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "guarded"}
	one := int32(1)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "guarded"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": "n1"},
				Containers:   []corev1.Container{{Name: "c", Image: "fake"}}, Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := intstr.FromInt32(0)
	if _, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 60*time.Second, "the guarded pod to run on n1 and both nodes to be Ready", func() bool {
		ns, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		up := 0
		for _, n := range ns.Items {
			if ready(&n) {
				up++
			}
		}
		return up == 2 && kubetest.RunningByNode(t, cs, "app=guarded")["n1"] == 1
	})
	k := &Kube{Client: cs, Node: "n1", Actions: Actions{Label: true, Drain: true}, EvictRetries: 3}
	start := time.Now()
	err := k.apply(ctx, true, "test")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "evict default/guarded") {
		t.Fatalf("drain against a refusing PDB: %v", err)
	}
	if took > 10*time.Second {
		t.Fatalf("the drain took %s: its retries are not bounded", took)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if n.Labels[UplinkKey] != "down" {
		t.Fatal("the label was not applied because the drain failed")
	}
	if kubetest.RunningByNode(t, cs, "app=guarded")["n1"] != 1 {
		t.Fatal("the PDB-guarded pod was evicted")
	}
}
