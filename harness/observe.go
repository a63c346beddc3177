package harness

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/edgefault/edgefault/runtime/wire"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// uplinkKey is the label and taint failover puts on a Node whose uplink is
// lost (runtime/failover.UplinkKey; the harness reads the API, not the
// runtime's code).
const uplinkKey = "edgefault.io/uplink"

// sampler reads every runtime's status over the management path (the
// member's own loopback) and the member's traffic counters, and records
// them as "sample" evidence: the report's charts and the flush timing.
func sampler(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f clusters.Fleet, nodes []string, every time.Duration) {
	for _, node := range nodes {
		g, err := GateOn(f, node)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A loaded machine may answer slower than the period: a
			// sample late is better than none.
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				var (
					gs wire.GateStatus
					bs buffer.Stats
					fs failover.Status
				)
				var s wire.Sample
				if g.Get(ctx, "/v1/gate", &gs) == nil {
					s.Gate = gs.State
				}
				if g.Get(ctx, "/v1/buffer", &bs) == nil {
					s.Depth = &bs.Records
				}
				if g.Get(ctx, "/v1/failover", &fs) == nil {
					s.Failover = string(fs.State)
				}
				if rx, tx, err := f.Counters(ctx, node); err == nil {
					s.Rx, s.Tx = &rx, &tx
				}
				ev.emitTyped(node, "sampler", "sample", s)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}

// watchNodes polls each site's Kubernetes API (over the management path) and records every change of a
// Node's uplink label, taint or schedulability as "kube" evidence.
func watchNodes(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f clusters.Fleet, sites []string, every time.Duration) error {
	for _, site := range sites {
		cfg, err := f.SiteConfig(site)
		if err != nil {
			return err
		}
		cfg.Timeout = 5 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]string{}
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
					for _, n := range nodes.Items {
						tainted := hasTaint(n.Spec.Taints, uplinkKey)
						key := fmt.Sprintf("%s|%v|%v", n.Labels[uplinkKey], tainted, n.Spec.Unschedulable)
						if seen[n.Name] == key {
							continue
						}
						seen[n.Name] = key
						ev.emitTyped(n.Name, "kube", "node", wire.NodeMark{Site: site, Uplink: n.Labels[uplinkKey], Tainted: tainted, Unschedulable: n.Spec.Unschedulable})
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	return nil
}

func hasTaint(ts []corev1.Taint, key string) bool {
	for _, t := range ts {
		if t.Key == key {
			return true
		}
	}
	return false
}

// customers call a node's local service (POST /pay) every period over
// the site's LAN, from the node's gateway (a card
// terminal on the store's LAN), never through the uplink. Each call is
// evidence. A call waits up to customerPatience.
// customerPatience is how long a customer's call waits for its answer: a
// card terminal waits tens of seconds. 3 s counted the test machine's
// stalls as refusals: when a hundred-store region returned on two cores,
// 87 calls fleet-wide timed out within one 10 s window, at stores that had
// never lost their link as much as at returning ones, while every till's
// handler had answered within 200 ms by its own clock. A till that waits
// on its uplink still fails: the outage outlasts this by far.
const customerPatience = 10 * time.Second

func customers(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f clusters.Fleet, node, gateway string, port int, period time.Duration) error {
	m, err := f.Member(node)
	if err != nil {
		return err
	}
	from, err := f.Host(gateway)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: from.DialContext}, Timeout: customerPatience}
	url := fmt.Sprintf("http://%s:%d/pay", m.Address, port)
	every(ctx, wg, period, func() {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
		resp, err := c.Do(req)
		if ctx.Err() != nil {
			return
		}
		ms := time.Since(start).Milliseconds()
		switch {
		case err != nil:
			ev.emit(node, "customer", "refused", "err", err.Error(), "ms", ms)
		case resp.StatusCode != http.StatusOK:
			resp.Body.Close()
			ev.emit(node, "customer", "refused", "status", resp.StatusCode, "ms", ms)
		default:
			resp.Body.Close()
			ev.emit(node, "customer", "paid", "ms", ms)
		}
	})
	return nil
}
