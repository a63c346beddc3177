package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func defaultRoute(ns string) string {
	gw := ""
	_ = nsdo.Do(ns, func() error {
		rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range rs {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				gw = r.Gw.String()
			}
		}
		return err
	})
	return gw
}

// naive is what a site would script by hand: every second, one connect
// to the cloud (ping -c1 -W1); on a failure, cordon the gateway's Node and
// replace the device's default route (kubectl cordon, ip route replace);
// on a success, undo both.
func naive(ctx context.Context, target, a1ns string, gwA, gwB netip.Addr, cs kubernetes.Interface, switches *atomic.Int64) {
	via := gwA
	for ctx.Err() == nil {
		ok := nsdo.Do(a1ns, func() error {
			c, err := net.DialTimeout("tcp", target, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
		want := gwA
		if !ok {
			want = gwB
		}
		if want != via {
			via = want
			switches.Add(1)
			_ = nsdo.Do(a1ns, func() error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				return netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: want.AsSlice()})
			})
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%v}}`, !ok)
			_, _ = cs.CoreV1().Nodes().Patch(ctx, "gw-a", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
		if ok {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func quantiles(d []time.Duration) (time.Duration, time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[(len(d)*95+99)/100-1]
}

func (b *bench) failover() {
	fmt.Println("== Failover: a factory building's uplink cut; time to the device's route switched and to the gateway's Node tagged, 20 trials, default settings (target: median <= 3 s); flaps: 10 cuts of 300 ms inside the hold-down")
	ctx := context.Background()
	f, down := benchFleet("bo", &scenarios.FleetSpec{Sites: []scenarios.Site{{Name: "factory", Buildings: []scenarios.Building{
		{Name: "a", Gateway: scenarios.Gateway{Name: "gw-a"}, Nodes: []scenarios.Node{{Name: "a1"}}},
		{Name: "b", Gateway: scenarios.Gateway{Name: "gw-b"}, Nodes: []scenarios.Node{{Name: "b1"}}},
	}}}}, netns.WithControlPlanes(k8sbin.Cache{Dir: k8sbin.DefaultDir()}))
	defer down()
	sc, err := f.Cluster("factory")
	check(err)
	a1, _ := f.NetnsMember("a1")
	gwA, _ := f.NetnsMember("gw-a")
	gwB, _ := f.NetnsMember("gw-b")
	cloud, _ := f.NetnsMember("cloud")
	ln, err := traffic.Knock(cloud.Namespace, cloud.Address+":0")
	check(err)
	defer ln.Close()
	mk := func(kc, ns string) *kubernetes.Clientset {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		check(err)
		cfg.Dial, cfg.Timeout = nsdo.DialContext(ns), 5*time.Second
		return kubernetes.NewForConfigOrDie(cfg)
	}
	admin := mk(sc.Admin, gwA.Namespace)
	sh, err := f.Shaper()
	check(err)
	defer sh.Close()
	gwT, err := f.Target("gw-a")
	check(err)
	pa, pb := netip.MustParseAddr(gwA.Address), netip.MustParseAddr(gwB.Address)
	target := ln.Addr().String()
	tagged := func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "gw-a", metav1.GetOptions{})
		return err == nil && (n.Labels[failover.UplinkKey] == "down" || n.Spec.Unschedulable)
	}
	trials := 20
	if b.quick {
		trials = 5
	}
	// trial cuts gw-a, waits for both effects, restores, waits for both
	// to be undone.
	trial := func() (route, tag time.Duration) {
		check(sh.Apply(ctx, gwT, shaper.Impairment{Outage: true}))
		t0 := time.Now()
		for (route == 0 || tag == 0) && time.Since(t0) < 60*time.Second {
			if route == 0 && defaultRoute(a1.Namespace) == pb.String() {
				route = time.Since(t0)
			}
			if tag == 0 && tagged() {
				tag = time.Since(t0)
			}
			time.Sleep(20 * time.Millisecond)
		}
		check(sh.Clear(ctx, gwT))
		t1 := time.Now()
		for (defaultRoute(a1.Namespace) != pa.String() || tagged()) && time.Since(t1) < 60*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		return route, tag
	}
	flaps := func() {
		for i := 0; i < 10; i++ {
			check(sh.Apply(ctx, gwT, shaper.Impairment{Outage: true}))
			time.Sleep(300 * time.Millisecond)
			check(sh.Clear(ctx, gwT))
			time.Sleep(300 * time.Millisecond)
		}
	}
	tw := table("method\tcut to routes switched (median, p95)\tcut to node tagged (median, p95)\troute switches in 10 flaps\tmeets target\t")
	run := func(label string, start func(context.Context) func() int64) {
		fctx, cancel := context.WithCancel(ctx)
		count := start(fctx)
		time.Sleep(2 * time.Second)
		var routes, tags []time.Duration
		for i := 0; i < trials; i++ {
			r, t := trial()
			routes, tags = append(routes, r), append(tags, t)
		}
		before := count()
		flaps()
		time.Sleep(15 * time.Second) // past the hold-down
		sw := count() - before
		cancel()
		time.Sleep(500 * time.Millisecond)
		rm, rp := quantiles(routes)
		tm, tp := quantiles(tags)
		ok := "baseline"
		if label == "edgeguard failover" {
			ok = pass(rm <= 3*time.Second && tm <= 3*time.Second)
		}
		fmt.Fprintf(tw, "%s\t%s, %s\t%s, %s\t%d\t%s\t\n", label, rm.Round(10*time.Millisecond), rp.Round(10*time.Millisecond), tm.Round(10*time.Millisecond), tp.Round(10*time.Millisecond), sw, ok)
	}
	run("edgeguard failover", func(ctx context.Context) func() int64 {
		dev, err := failover.New(failover.Config{Primary: pa, Alternate: pb, Targets: []string{target}, Netns: a1.Namespace, Node: "a1", Logger: discard()})
		check(err)
		gw, err := failover.New(failover.Config{Primary: netip.MustParseAddr(cloud.Address), Targets: []string{target}, Netns: gwA.Namespace, Node: "gw-a", Logger: discard(),
			Kube: &failover.Kube{Client: mk(sc.Nodes["gw-a"], gwA.Namespace), Node: "gw-a", Actions: failover.Actions{Label: true, Taint: true, Cordon: true}}})
		check(err)
		go dev.Run(ctx)
		go gw.Run(ctx)
		return func() int64 { return int64(dev.Status().Switches) }
	})
	run("naive: connect every 1 s, act on one failure", func(ctx context.Context) func() int64 {
		var sw atomic.Int64
		go naive(ctx, target, a1.Namespace, pa, pb, admin, &sw)
		return sw.Load
	})
	tw.Flush()
}
