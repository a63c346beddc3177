package deploy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/deploy"
	"github.com/edgefault/edgefault/internal/kubetest"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Under one shared ServiceAccount (a DaemonSet on kind or an existing
// cluster), deploy/failover.yaml lets each edgeguard pod change its own
// Node and no other: a token bound to a pod on node x may label x; the
// same account is refused (403) on node y, and so is an unbound token.
// Against a real kube-apiserver.
func TestFailoverMayChangeOnlyItsOwnNode(t *testing.T) {
	ctx := context.Background()
	cp := kubetest.ControlPlane(t, "vap", false)
	admin, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	dyn, _ := dynamic.NewForConfig(cp.Admin)
	dc, _ := discovery.NewDiscoveryClientForConfig(cp.Admin)
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	base, _ := deploy.Objects()
	extra, err := deploy.FailoverObjects()
	if err != nil {
		t.Fatal(err)
	}
	drain, err := deploy.DrainObjects()
	if err != nil {
		t.Fatal(err)
	}
	extra = append(extra, drain...)
	for _, o := range append(base, extra...) {
		if o.GetKind() == "DaemonSet" {
			continue
		}
		m, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		ri := dyn.Resource(m.Resource)
		var res dynamic.ResourceInterface = ri
		if o.GetNamespace() != "" {
			res = ri.Namespace(o.GetNamespace())
		}
		if _, err := res.Create(ctx, o, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	for _, n := range []string{"x", "y"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := admin.CoreV1().Pods("edgefault-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "edgeguard-x"},
		Spec: corev1.PodSpec{NodeName: "x", ServiceAccountName: "edgeguard", Containers: []corev1.Container{{Name: "c", Image: "edgefault/edgeguard:dev"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(bound bool) *kubernetes.Clientset {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}
		if bound {
			tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		got, err := admin.CoreV1().ServiceAccounts("edgefault-system").CreateToken(ctx, "edgeguard", tr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := rest.AnonymousClientConfig(cp.Admin)
		cfg.BearerToken = got.Status.Token
		return kubernetes.NewForConfigOrDie(cfg)
	}
	label := func(cs *kubernetes.Clientset, node string) error {
		_, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"metadata":{"labels":{"edgefault.io/uplink":"down"}}}`), metav1.PatchOptions{})
		return err
	}
	// The apiserver loads a new admission policy within a few seconds.
	unbound := token(false)
	deadline := time.Now().Add(20 * time.Second)
	for err := label(unbound, "x"); !apierrors.IsForbidden(err); err = label(unbound, "x") {
		if time.Now().After(deadline) {
			t.Fatalf("a token bound to no pod labelling x: %v, want 403 once the policy is loaded", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	onX := token(true)
	if err := label(onX, "x"); err != nil {
		t.Fatalf("the pod on x labelling x: %v", err)
	}
	err = label(onX, "y")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only its own Node") || !strings.Contains(err.Error(), "pod on x, not y") {
		t.Fatalf("the pod on x labelling y: %v, want 403 from the admission policy", err)
	}
	// Of its own Node, only what failover does.
	patch := func(cs *kubernetes.Clientset, body string) error {
		_, err := cs.CoreV1().Nodes().Patch(ctx, "x", types.MergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	// A taint of someone else's, which failover must keep.
	if _, err := admin.CoreV1().Nodes().Patch(ctx, "x", types.MergePatchType, []byte(`{"spec":{"taints":[{"key":"example.com/dedicated","value":"gpu","effect":"NoSchedule"}]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// As failover does it: the Node read, its taints kept, one added.
	withTaints := func(extra ...corev1.Taint) []corev1.Taint {
		n, err := admin.CoreV1().Nodes().Get(ctx, "x", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return append(n.Spec.Taints, extra...)
	}
	uplink := corev1.Taint{Key: "edgefault.io/uplink", Value: "down", Effect: corev1.TaintEffectNoSchedule}
	b, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": true, "taints": withTaints(uplink)},
		"metadata": map[string]any{"annotations": map[string]any{"edgefault.io/cordoned-by": "failover"}}})
	if err := patch(onX, string(b)); err != nil {
		t.Fatalf("the pod on x cordoning and tainting x as failover does: %v", err)
	}
	lifecycle, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": withTaints(corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute})}})
	dropped, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": []corev1.Taint{uplink}}})
	for _, tc := range []struct{ what, body, says string }{
		{"a kubelet-restricted label", `{"metadata":{"labels":{"node-restriction.kubernetes.io/pool":"gold"}}}`, "only edgefault.io/ labels"},
		{"a role label", `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`, "only edgefault.io/ labels"},
		{"another annotation", `{"metadata":{"annotations":{"node.alpha.kubernetes.io/ttl":"0"}}}`, "only edgefault.io/ annotations"},
		{"a lifecycle taint", string(lifecycle), "only edgefault.io/ taints"},
		{"someone else's taint removed", string(dropped), "only edgefault.io/ taints"},
		{"its provider ID", `{"spec":{"providerID":"kind://evil"}}`, "only spec.unschedulable"},
		{"an owner (the garbage collector would delete it)", `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Namespace","name":"gone","uid":"6f0e8c1e-0000-4000-8000-000000000000"}]}}`, "owner references or finalizers"},
		{"a finalizer", `{"metadata":{"finalizers":["example.com/hold"]}}`, "owner references or finalizers"},
	} {
		err := patch(onX, tc.body)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("the pod on x changing %s of x: %v, want 403 (%s)", tc.what, err, tc.says)
		}
	}
	if err := onX.CoreV1().Nodes().Delete(ctx, "x", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the pod on x deleting x: %v, want 403", err)
	}
	n, _ := admin.CoreV1().Nodes().Get(ctx, "x", metav1.GetOptions{})
	if _, err := onX.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the pod on x updating x's status: %v, want 403", err)
	}
	// Reading is not narrowed: a drain must see the other nodes.
	if _, err := onX.CoreV1().Nodes().Get(ctx, "y", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod on x reading y: %v", err)
	}

	// Evictions (failover-drain.yaml): only in namespaces that opted in,
	// only with a token bound to a pod.
	for ns, labels := range map[string]map[string]string{"shop": {"edgefault.io/drain": "allowed"}, "infra": nil} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		for _, name := range []string{"app-1", "app-2"} {
			if _, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{NodeName: "x", Containers: []corev1.Container{{Name: "c", Image: "app:1"}}}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	evict := func(cs *kubernetes.Clientset, ns, name string) error {
		return cs.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
	}
	deadline = time.Now().Add(20 * time.Second)
	for err := evict(unbound, "shop", "app-1"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "token of a pod"); err = evict(unbound, "shop", "app-1") {
		if time.Now().After(deadline) {
			t.Fatalf("a token bound to no pod evicting: %v, want 403 once the policy is loaded", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := evict(onX, "infra", "app-1"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "labelled edgefault.io/drain=allowed, and infra is not") {
		t.Errorf("the pod on x evicting in a namespace that did not opt in: %v, want 403", err)
	}
	if err := evict(onX, "shop", "app-2"); err != nil {
		t.Errorf("the pod on x evicting in a namespace that opted in: %v", err)
	}
}
