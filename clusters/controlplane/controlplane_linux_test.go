package controlplane_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/ledger"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) {
	ledger.RunGateIfInvoked()
	os.Exit(m.Run())
}

// A real etcd and kube-apiserver (built by `edgefault setup`, which
// .ci/run runs first) come up, store and serve an object, and leave no
// process or file behind when stopped.
func TestControlPlaneServesAndStops(t *testing.T) {
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{Site: "store", Dir: filepath.Join(dir, "cp"), Bin: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Ledger: l, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "edge"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Namespaces().Get(ctx, "edge", metav1.GetOptions{})
	if err != nil || got.Name != "edge" {
		t.Fatalf("get namespace: %v %v", got, err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil || v.GitVersion != k8sbin.KubernetesVersion {
		t.Fatalf("server version %v, %v; want %s", v, err, k8sbin.KubernetesVersion)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	entries, _ := l.Entries("test")
	var pids []ledger.Entry
	for _, e := range entries {
		if e.Kind == ledger.KindProcess {
			pids = append(pids, e)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("ledger lists %d processes, want etcd and kube-apiserver: %+v", len(pids), entries)
	}
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, e := range pids {
		if e.Alive() {
			t.Errorf("%s (pid %d) still running after Stop", e.Name, e.PID)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cp")); !os.IsNotExist(err) {
		t.Errorf("control plane directory left behind: %v", err)
	}
	if left, _ := l.Entries("test"); len(left) != 0 {
		t.Errorf("ledger still lists %+v", left)
	}
}

// Each node's runtime has its own identity: it may label, taint and
// cordon its own Node, and the real apiserver refuses the same change to
// another node of the site with 403.
func TestNodeIdentityMayChangeOnlyItsOwnNode(t *testing.T) {
	dir := t.TempDir()
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{Site: "factory", Dir: filepath.Join(dir, "cp"), Bin: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Ledger: l, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	admin, _ := cp.Client()
	for _, n := range []string{"factory-a1", "factory-a2"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"edgefault.io/site": "factory"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cp.GrantNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := cp.NodeConfig("factory-a1")
	if err != nil {
		t.Fatal(err)
	}
	a1, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	labelAndTaint := []byte(`{"metadata":{"labels":{"uplink":"down"}},"spec":{"unschedulable":true,"taints":[{"key":"edgefault.io/uplink","value":"down","effect":"NoSchedule"}]}}`)
	got, err := a1.CoreV1().Nodes().Patch(ctx, "factory-a1", types.StrategicMergePatchType, labelAndTaint, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("a node patching its own Node: %v", err)
	}
	if got.Labels["uplink"] != "down" || !got.Spec.Unschedulable || len(got.Spec.Taints) != 1 {
		t.Fatalf("own node after patch: labels %v unschedulable %v taints %v", got.Labels, got.Spec.Unschedulable, got.Spec.Taints)
	}
	_, err = a1.CoreV1().Nodes().Patch(ctx, "factory-a2", types.StrategicMergePatchType, labelAndTaint, metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("a node patching another node: %v, want 403 Forbidden", err)
	}
	other, _ := admin.CoreV1().Nodes().Get(ctx, "factory-a2", metav1.GetOptions{})
	if other.Labels["uplink"] != "" || other.Spec.Unschedulable {
		t.Fatalf("the other node changed: %+v", other)
	}
	// Nor may it create namespaces or read secrets.
	if _, err := a1.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets as a node: %v, want 403", err)
	}
}
