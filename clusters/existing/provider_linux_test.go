package existing_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The provider on a real API server, reached through a kubeconfig file:
// it refuses a fleet without the runtime's image or one the labels do not
// play (deploying nothing), deploys for one that fits, refuses a second
// fleet of the name, refuses to shape the cloud, an unknown member or
// anything that would hold the API server's address, and leaves nothing
// after Down, or after a crash once the ledger is swept (edgefault
// cleanup).
func TestProviderPlaysTheLabelledNodesAndLeavesNothing(t *testing.T) {
	cp := kubetest.ControlPlane(t, "lab", true) // its controller manager finalizes the namespace
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cp.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	api, err := existing.APIAddresses(ctx, cs)
	if err != nil || len(api) == 0 {
		t.Fatalf("the API server's addresses: %v %v", api, err)
	}
	node := func(name, addr string, labels map[string]string) {
		t.Helper()
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// kwok takes the Node over first (its status replaced, addresses
		// and all); the address is patched in after that, and must hold.
		ready := func() bool {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return true
				}
			}
			return false
		}
		kubetest.Eventually(t, 30*time.Second, "kwok to take node "+name+" over", ready)
		patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q}]}}`, addr)
		kubetest.Eventually(t, 30*time.Second, "node "+name+"'s address to hold", func() bool {
			if _, err := cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
				return false
			}
			time.Sleep(time.Second)
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			return err == nil && len(n.Status.Addresses) > 0 && n.Status.Addresses[0].Address == addr
		})
	}
	node("pi-1", "10.77.0.2", map[string]string{clusters.LabelRole: "node", clusters.LabelSite: "truck", clusters.LabelMember: "truck-ecu"})
	// The cloud is where the API server is: what a two-node lab does.
	node("vm-1", api[len(api)-1].String(), map[string]string{clusters.LabelRole: "cloud", clusters.LabelMember: "cloud"})
	vehicle, err := scenarios.Builtin("vehicle")
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	nsGone := func(what string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: namespace %s is there (%v)", what, existing.Namespace, err)
		}
	}

	noImage, err := existing.NewProvider(existing.WithKubeconfig(kc), existing.WithLedger(led))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noImage.Up(ctx, "lab", &vehicle.Spec.Topology); err == nil || !strings.Contains(err.Error(), "runtime's image is required") {
		t.Errorf("a fleet without the runtime's image: %v", err)
	}
	p, err := existing.NewProvider(existing.WithKubeconfig(kc), existing.WithImage("example.test/edgeguard:1"), existing.WithLedger(led))
	if err != nil {
		t.Fatal(err)
	}
	bigger := vehicle.Spec.Topology
	bigger.Sites = []scenarios.Site{bigger.Sites[0]}
	bigger.Sites[0].Nodes = append(bigger.Sites[0].Nodes, scenarios.Node{Name: "truck-cam"})
	if _, err := p.Up(ctx, "lab", &bigger); err == nil || !strings.Contains(err.Error(), "member truck-cam: no node plays it") {
		t.Errorf("a topology the labels do not play: %v", err)
	}
	nsGone("after a refused Up")

	// The user's own namespace of the name: Up refuses, and the refusal's
	// clean-up leaves the namespace theirs.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: existing.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx, "lab", &vehicle.Spec.Topology); err == nil || !strings.Contains(err.Error(), "already on the cluster") {
		t.Errorf("Up beside the user's namespace: %v", err)
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{}); err != nil || n.DeletionTimestamp != nil {
		t.Fatalf("a refused Up took the user's namespace: %v %v", err, n.DeletionTimestamp)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, existing.Namespace, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, time.Minute, "the user's namespace to go", func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, existing.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	if _, err := p.Up(ctx, "lab", &vehicle.Spec.Topology); err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(existing.Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil || cm.Data[agent.NodesKey] != "pi-1" {
		t.Errorf("the run's ConfigMap names %q (%v), want pi-1 alone (never the cloud's node)", cm.Data[agent.NodesKey], err)
	}
	if _, err := cs.AppsV1().DaemonSets(existing.Namespace).Get(ctx, existing.AgentName, metav1.GetOptions{}); err != nil {
		t.Errorf("the agents' DaemonSet: %v", err)
	}
	if names, err := p.List(ctx); err != nil || len(names) != 1 || names[0] != "lab" {
		t.Errorf("List: %v %v", names, err)
	}
	g, err := p.Get(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	ecu, err := g.Member("truck-ecu")
	if err != nil || ecu.Address != "10.77.0.2" || ecu.Location != "node pi-1" {
		t.Errorf("member truck-ecu: %+v %v", ecu, err)
	}
	if _, err := p.Up(ctx, "lab", &vehicle.Spec.Topology); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Errorf("a second fleet of the name: %v", err)
	}

	sh, err := g.(*existing.Fleet).Shaper()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		member string
		imp    shaper.Impairment
		want   string
	}{
		{"cloud", shaper.Impairment{Outage: true}, "is the cloud: it is never shaped"},
		{"truck-cam", shaper.Impairment{Outage: true}, "has no member \"truck-cam\""},
		{"truck-ecu", shaper.Impairment{Outage: true}, "where the nodes reach their API server"},
		{"truck-ecu", shaper.Impairment{Loss: 5, Targets: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, "where the nodes reach their API server"},
	} {
		if err := sh.Apply(ctx, c.member, c.imp); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.member, c.imp, err, c.want)
		}
	}
	if err := sh.Close(); err != nil {
		t.Errorf("closing a shaper that changed nothing: %v", err)
	}

	if err := p.Down(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	nsGone("after Down")
	if _, err := p.Get(ctx, "lab"); err == nil {
		t.Error("the fleet is still up after Down")
	}
	if es, _ := led.Entries("lab"); len(es) != 0 {
		t.Errorf("the ledger still lists %d entries of the fleet", len(es))
	}

	// A harness that crashed after Up: what cleanup does.
	if _, err := p.Up(ctx, "lab2", &vehicle.Spec.Topology); err != nil {
		t.Fatal(err)
	}
	if err := led.Sweep("lab2", existing.Removers()); err != nil {
		t.Fatal(err)
	}
	nsGone("after the ledger's sweep")
	if _, err := os.Stat(filepath.Join(filepath.Dir(led.Dir()), "existing-fleets", "lab2")); !os.IsNotExist(err) {
		t.Errorf("the fleet's state remains: %v", err)
	}
}
