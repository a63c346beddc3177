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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
