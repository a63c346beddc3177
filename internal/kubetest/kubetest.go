// Package kubetest holds small helpers for tests against a real
// Kubernetes API.
package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/ledger"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RunningByNode counts the Running, not deleted pods in namespace
// "default" that match the label selector, by node.
func RunningByNode(t testing.TB, cs kubernetes.Interface, selector string) map[string]int {
	t.Helper()
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[p.Spec.NodeName]++
		}
	}
	return out
}

// Eventually polls ok every 200 ms and fails the test if it is not true
// within the given time.
func Eventually(t testing.TB, within time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

// ControlPlane starts a real control plane (etcd and kube-apiserver, plus
// controller-manager, scheduler and kwok with workloads) for site under a
// ledger of the test's own, and stops it when the test ends. It skips
// when not root; the binaries come from `edgefault setup`'s cache.
func ControlPlane(t testing.TB, site string, workloads bool) *controlplane.ControlPlane {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts a real etcd and kube-apiserver (built by `edgefault setup`) recorded in the ledger (CI runs as root)")
	}
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.Start(context.Background(), controlplane.Options{Site: site, Dir: filepath.Join(dir, "cp"),
		Bin: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Ledger: l, Owner: "test", Workloads: workloads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cp
}
