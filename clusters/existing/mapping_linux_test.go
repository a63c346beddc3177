package existing_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) {
	ledger.RunGateIfInvoked()
	os.Exit(m.Run())
}

// A real API server's nodes, labelled as a user would, map to a
// topology's members; what is missing, mislabelled or doubled is named
// with the label that fixes it.
func TestNodesMapToMembers(t *testing.T) {
	cp := kubetest.ControlPlane(t, "lab", false)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node := func(name string, labels map[string]string) {
		t.Helper()
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node("pi-1", map[string]string{clusters.LabelRole: "node", clusters.LabelSite: "store", clusters.LabelMember: "store-pos"})
	node("pi-2", map[string]string{clusters.LabelRole: "gateway", clusters.LabelSite: "store", clusters.LabelMember: "store-router"})
	node("cloud-vm", map[string]string{clusters.LabelRole: "cloud"})
	node("spare", nil)
	spec := &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "store", Gateway: &scenarios.Gateway{Name: "store-router"}, Nodes: []scenarios.Node{{Name: "store-pos"}}}}}

	m, err := existing.Map(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := existing.Check(m, spec); err == nil || !strings.Contains(err.Error(), "the cloud is member \"cloud\"") {
		t.Fatalf("a cloud node named other than cloud: %v", err)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "cloud-vm", metav1.GetOptions{})
	n.Labels[clusters.LabelMember] = "cloud"
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if m, err = existing.Map(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := existing.Check(m, spec); err != nil {
		t.Fatalf("a labelled cluster: %v", err)
	}
	want := map[string]string{"pi-1": "store-pos", "pi-2": "store-router", "cloud-vm": "cloud", "spare": ""}
	for _, x := range m {
		if x.Member != want[x.Node] {
			t.Errorf("node %s plays %q, want %q", x.Node, x.Member, want[x.Node])
		}
	}

	// A topology with more than the cluster has, and labels gone wrong.
	node("pi-3", map[string]string{clusters.LabelRole: "router", clusters.LabelSite: "store"})
	node("pi-4", map[string]string{clusters.LabelRole: "node", clusters.LabelSite: "store", clusters.LabelMember: "store-pos"})
	bigger := &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "store", Gateway: &scenarios.Gateway{Name: "store-router"}, Nodes: []scenarios.Node{{Name: "store-pos"}, {Name: "store-cam"}}}}}
	if m, err = existing.Map(ctx, cs); err != nil {
		t.Fatal(err)
	}
	err = existing.Check(m, bigger)
	for _, s := range []string{
		`node pi-3: edgefault.io/role="router": use node, gateway or cloud`,
		"node pi-4: node pi-1 plays member store-pos too",
		"member store-cam: no node plays it: label one (kubectl label node NODE edgefault.io/role=node edgefault.io/site=store edgefault.io/member=store-cam)",
	} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("want %q in: %v", s, err)
		}
	}
}
