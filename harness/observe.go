package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/internal/nsdo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// uplinkKey is the label and taint failover puts on a Node whose uplink is
// lost (runtime/failover.UplinkKey; the harness reads the API, not the
// runtime's code).
const uplinkKey = "edgefault.io/uplink"

// sampler reads every runtime's status over the management path (the
// node's own loopback) and the node's traffic counters, and records them
// as "sample" evidence: the report's charts and the flush timing.
func sampler(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f *netns.Fleet, nodes []string, every time.Duration) {
	for _, node := range nodes {
		m, err := f.Member(node)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A loaded machine may answer slower than the period: a
			// sample late is better than none.
			g := GateOn(m)
			get := func(path string, v any) bool { return g.Get(ctx, path, v) == nil }
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				var g struct {
					State string `json:"state"`
				}
				var b struct {
					Records int64 `json:"records"`
				}
				var fo struct {
					State string `json:"state"`
				}
				kv := []any{}
				if get("/v1/gate", &g) {
					kv = append(kv, "gate", g.State)
				}
				if get("/v1/buffer", &b) {
					kv = append(kv, "depth", b.Records)
				}
				if get("/v1/failover", &fo) {
					kv = append(kv, "failover", fo.State)
				}
				if rx, tx, err := counters(m.Namespace); err == nil {
					kv = append(kv, "rx", rx, "tx", tx)
				}
				ev.emit(node, "sampler", "sample", kv...)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}

// counters sums the bytes received and sent on every interface of the
// namespace but loopback.
func counters(ns string) (rx, tx int64, err error) {
	var b []byte
	err = nsdo.Do(ns, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseInt(f[0], 10, 64)
		t, _ := strconv.ParseInt(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx, nil
}

// watchNodes polls each site's Kubernetes API (from the site's control
// plane namespace: the management path) and records every change of a
// Node's uplink label, taint or schedulability as "kube" evidence.
func watchNodes(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f *netns.Fleet, sites []string, every time.Duration) error {
	for _, site := range sites {
		sc, err := f.Cluster(site)
		if err != nil {
			return err
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", sc.Admin)
		if err != nil {
			return fmt.Errorf("site %s kubeconfig: %w", site, err)
		}
		cfg.Dial = nsdo.DialContext(sc.Namespace)
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
						ev.emit(n.Name, "kube", "node", "site", site, "uplink", n.Labels[uplinkKey], "tainted", tainted, "unschedulable", n.Spec.Unschedulable)
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
// the site's LAN, from the namespace of the node's gateway (a card
// terminal on the store's LAN), never through the uplink. Each call is
// evidence.
func customers(ctx context.Context, wg *sync.WaitGroup, ev *evidenceLogs, f *netns.Fleet, node, gateway string, port int, every time.Duration) error {
	m, err := f.Member(node)
	if err != nil {
		return err
	}
	from, err := f.Member(gateway)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(from.Namespace)}, Timeout: 3 * time.Second}
	url := fmt.Sprintf("http://%s:%d/pay", m.Address, port)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
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
		}
	}()
	return nil
}
