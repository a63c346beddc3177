package controlplane_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// A site's control plane runs on the site, inside its LAN: a node reaches
// the API over the LAN with its own identity, and keeps reaching it while
// the site's uplink is cut.
func TestSiteAPISurvivesACutUplink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces); CI runs as root")
	}
	dir := t.TempDir()
	l, _ := ledger.Open(filepath.Join(dir, "ledger"))
	p, err := netns.NewProvider(netns.WithLedger(l))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cp%d", os.Getpid()%10000)
	ctx := context.Background()
	f, err := p.UpFleet(ctx, name, &scenarios.FleetSpec{Sites: []scenarios.Site{{
		Name: "store", Gateway: &scenarios.Gateway{Name: "store-gw"},
		Nodes: []scenarios.Node{{Name: "store-cp"}, {Name: "store-pos"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Down(ctx, name)
	host, _ := f.NetnsMember("store-cp")
	cp, err := controlplane.Start(ctx, controlplane.Options{Site: "store", Dir: filepath.Join(dir, "cp"),
		Bin: k8sbin.Cache{Dir: k8sbin.DefaultDir()}, Ledger: l, Owner: name, Netns: host.Namespace, Address: host.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	admin, _ := cp.Client()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "store-pos"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cp.GrantNode(ctx, "store-pos"); err != nil {
		t.Fatal(err)
	}
	cfg, err := cp.NodeConfig("store-pos")
	if err != nil {
		t.Fatal(err)
	}
	pos, _ := f.NetnsMember("store-pos")
	// The node's runtime lives in the node: its connections start there.
	cfg.Dial = nsdo.DialContext(pos.Namespace)
	node, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	patch := func(v string) error {
		_, err := node.CoreV1().Nodes().Patch(ctx, "store-pos", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"uplink":"`+v+`"}}}`), metav1.PatchOptions{})
		return err
	}
	if err := patch("up"); err != nil {
		t.Fatalf("node -> site API over the LAN: %v", err)
	}
	sh, err := f.Shaper()
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	gw, _ := f.Target("store-gw")
	if err := sh.Apply(ctx, gw, shaper.Impairment{Outage: true}); err != nil {
		t.Fatal(err)
	}
	if err := patch("down"); err != nil {
		t.Fatalf("the site API did not answer its node with the uplink cut: %v", err)
	}
	// Restore: nothing written during the cut is lost, and the site keeps
	// answering.
	if err := sh.Clear(ctx, gw); err != nil {
		t.Fatal(err)
	}
	got, err := node.CoreV1().Nodes().Get(ctx, "store-pos", metav1.GetOptions{})
	if err != nil || got.Labels["uplink"] != "down" {
		t.Fatalf("after restore: label %q, %v", got.Labels["uplink"], err)
	}
}
