package existing_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/runtime/agent"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What a run deploys on a real cluster: the agent may read the run's
// Lease and ConfigMap and its namespace's pods and nothing else, runs
// with NET_ADMIN and KILL alone on the host's network and PIDs, a second
// deploy is refused, the Lease is renewed, and
// after Remove the cluster holds nothing of the harness.
func TestRunDeploysMinimallyAndLeavesNothing(t *testing.T) {
	cp := kubetest.ControlPlane(t, "lab", true) // its controller manager finalizes the namespace
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := existing.Run{ID: existing.NewRunID("lab"), Nodes: []string{"pi-1", "pi-2"}, Image: "edgefault/edgeguard:test", Token: existing.NewToken()}
	if err := existing.Deploy(ctx, cs, run); err != nil {
		t.Fatal(err)
	}
	if err := existing.Deploy(ctx, cs, run); err == nil || !strings.Contains(err.Error(), "already on the cluster") {
		t.Errorf("a second deploy: %v", err)
	}

	sa := "system:serviceaccount:" + existing.Namespace + ":" + existing.AgentName
	for _, tc := range []struct {
		verb, group, resource, name, ns string
		allowed                         bool
	}{
		{"get", "coordination.k8s.io", "leases", agent.RunObject, existing.Namespace, true},
		{"get", "", "configmaps", agent.RunObject, existing.Namespace, true},
		{"update", "coordination.k8s.io", "leases", agent.RunObject, existing.Namespace, false},
		{"get", "coordination.k8s.io", "leases", "another", existing.Namespace, false},
		{"get", "", "secrets", agent.RunObject, existing.Namespace, false},
		{"list", "", "secrets", "", "kube-system", false},
		{"patch", "", "nodes", "pi-1", "", false},
		{"create", "", "pods", "", existing.Namespace, false},
		// A workload's containers, before it kills them: in its own
		// namespace only, and read only.
		{"get", "", "pods", "runtime-truck-ecu-1a2b3c", existing.Namespace, true},
		{"get", "", "pods", "coredns", "kube-system", false},
		{"delete", "", "pods", "runtime-truck-ecu-1a2b3c", existing.Namespace, false},
		{"create", "", "pods/exec", "runtime-truck-ecu-1a2b3c", existing.Namespace, false},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + existing.Namespace, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: tc.resource, Name: tc.name, Namespace: tc.ns}}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.allowed {
			t.Errorf("the agent may %s %s %q in %q: %v, want %v", tc.verb, tc.resource, tc.name, tc.ns, got.Status.Allowed, tc.allowed)
		}
	}

	ds, err := cs.AppsV1().DaemonSets(existing.Namespace).Get(ctx, existing.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ps := ds.Spec.Template.Spec
	c := ps.Containers[0].SecurityContext
	// The host's network (to shape it) and PIDs (to crash a workload),
	// two capabilities, never privileged.
	if !ps.HostNetwork || !ps.HostPID || ps.HostIPC || *c.Privileged || *c.AllowPrivilegeEscalation ||
		!slices.Equal(c.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "KILL"}) || len(c.Capabilities.Drop) != 1 || c.Capabilities.Drop[0] != "ALL" {
		t.Errorf("the agent's pod: hostNetwork %v hostPID %v privileged %v, capabilities %+v", ps.HostNetwork, ps.HostPID, *c.Privileged, c.Capabilities)
	}
	cm, err := cs.CoreV1().ConfigMaps(existing.Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil || cm.Data[agent.NodesKey] != "pi-1,pi-2" {
		t.Errorf("the run's ConfigMap: %v %v", cm.Data, err)
	}

	before, err := cs.CoordinationV1().Leases(existing.Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := existing.Renew(rctx, cs); err != nil {
		t.Fatal(err)
	}
	cancel()
	after, _ := cs.CoordinationV1().Leases(existing.Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if !after.Spec.RenewTime.After(before.Spec.RenewTime.Time) {
		t.Errorf("the lease was not renewed: %v then %v", before.Spec.RenewTime, after.Spec.RenewTime)
	}

	// Another run's Remove leaves this run's namespace alone.
	if err := existing.Remove(ctx, cs, existing.NewRunID("other"), time.Minute); !errors.Is(err, existing.ErrNotOurs) {
		t.Errorf("another run's Remove: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("another run's Remove took the namespace: %v", err)
	}
	if err := existing.Remove(ctx, cs, run.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	nss, _ := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	for _, n := range nss.Items {
		if n.Name == existing.Namespace {
			t.Errorf("namespace %s is still there (%s)", n.Name, n.Status.Phase)
		}
	}
	// Nothing cluster-wide was made to begin with.
	crs, _ := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=edgefault"})
	crbs, _ := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=edgefault"})
	if len(crs.Items)+len(crbs.Items) > 0 {
		t.Errorf("cluster roles or bindings of the harness on the cluster: %d, %d", len(crs.Items), len(crbs.Items))
	}
	if err := existing.Remove(ctx, cs, run.ID, time.Minute); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}
