package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/scenarios"
)

// kindBench times the offline node image (built from nothing, then found
// cached) and kind clusters of one and three nodes, beside the embedded
// fleet's site cluster of the same size brought up in the same run.
func (b *bench) kind() {
	fmt.Println("== kind: the offline node image (cold: rootfs and image rebuilt; cached) and cluster create to Ready, against the embedded fleet's site cluster (target: image <= 1.5 GB)")
	ctx := context.Background()
	cache := k8sbin.Cache{Dir: k8sbin.DefaultDir()}
	dir, err := os.MkdirTemp("/run", "edgefault-bench-kind-")
	check(err)
	defer os.RemoveAll(dir)
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	check(err)
	eng, err := kind.EnsureEngine(ctx, kind.EngineOptions{Ledger: l, Log: discard()})
	check(err)
	if eng.Started {
		defer func() { check(kind.StopEngine(l)) }()
	}
	tw := table("node image\tbuilt in\tsize\tmeets target\t")
	passes := []struct {
		name  string
		force bool
	}{{"cold", true}, {"cached", false}}
	if b.quick {
		passes = passes[1:]
	}
	var ref string
	for _, p := range passes {
		t0 := time.Now()
		img, err := kind.BuildNodeImage(ctx, kind.NodeImageOptions{Cache: cache, Force: p.force})
		check(err)
		ref = img.Ref
		fmt.Fprintf(tw, "%s\t%v\t%.2f GB\t%s\t\n", p.name, time.Since(t0).Round(100*time.Millisecond), float64(img.Size)/1e9, pass(img.Size <= 1.5e9))
		for _, s := range img.Steps {
			fmt.Fprintf(tw, "  %s\t%v\t\t\t\n", s.Name, s.Took.Round(100*time.Millisecond))
		}
	}
	tw.Flush()

	cs, err := kind.NewClusters(l, "benchkind", discard())
	check(err)
	defer func() { _ = l.Sweep("benchkind", kind.Removers()) }()
	np, err := netns.NewProvider(netns.WithLedger(l), netns.WithLogger(discard()), netns.WithControlPlanes(cache))
	check(err)
	tw = table("\nnodes\tkind: Ready after\tkind: delete\tembedded site cluster: Ready after\tembedded: down\t")
	for _, workers := range []int{0, 2} {
		name := fmt.Sprintf("efbench%d", workers)
		t0 := time.Now()
		_, err := cs.Create(ctx, kind.ClusterSpec{Name: name, Workers: workers, NodeImage: ref})
		check(err)
		up := time.Since(t0)
		t1 := time.Now()
		check(cs.Delete(ctx, name))
		down := time.Since(t1)
		spec := &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "s0", Gateway: &scenarios.Gateway{Name: "s0-gw"}, NodeCount: workers + 1}}}
		t2 := time.Now()
		_, err = np.UpFleet(ctx, "benchemb", spec)
		check(err)
		eup := time.Since(t2)
		t3 := time.Now()
		check(np.Down(ctx, "benchemb"))
		edown := time.Since(t3)
		fmt.Fprintf(tw, "1+%d\t%v\t%v\t%v\t%v\t\n", workers, up.Round(100*time.Millisecond), down.Round(100*time.Millisecond), eup.Round(100*time.Millisecond), edown.Round(100*time.Millisecond))
	}
	tw.Flush()

	// A scenario's whole fleet, as run and certify make it: the retail
	// topology (three stores, six nodes, three routers, the cloud).
	sc, err := scenarios.Builtin("retail")
	check(err)
	kp, err := kind.NewProvider(kind.WithLedger(l), kind.WithLogger(discard()), kind.WithNodeImage(ref))
	check(err)
	tw = table("\nfleet (retail: 3 sites, 6 nodes)\tup\tdown\t")
	for _, p := range []struct {
		name string
		up   func() error
		down func() error
	}{
		{"kind provider", func() error { _, err := kp.Up(ctx, "benchretail", &sc.Spec.Topology); return err }, func() error { return kp.Down(ctx, "benchretail") }},
		{"netns provider (baseline)", func() error { _, err := np.Up(ctx, "benchretail", &sc.Spec.Topology); return err }, func() error { return np.Down(ctx, "benchretail") }},
	} {
		t0 := time.Now()
		check(p.up())
		up := time.Since(t0)
		t1 := time.Now()
		check(p.down())
		fmt.Fprintf(tw, "%s\t%v\t%v\t\n", p.name, up.Round(100*time.Millisecond), time.Since(t1).Round(100*time.Millisecond))
	}
	tw.Flush()
	fmt.Println("(The embedded fleet's nodes are kwok Nodes beside a real control plane: they run no kubelet. kind's run a real kubelet, containerd and kube-proxy each.)")
}
