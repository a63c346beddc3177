package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/site"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/units"
)

// scaleTCP scales the kernel's give-up time for established connections
// with the scenario (docs/architecture.md, evidence and time): 15 retransmissions
// (~15 min) become as few as last that long divided by the scale.
func (r *run) scaleTCP(ctx context.Context) {
	if r.scale <= 1 {
		return
	}
	retries := tcpRetriesFor(time.Duration(float64(924*time.Second) / r.scale)) // tcp_retries2=15 is ~924.6 s
	// A connect gives up after tcp_syn_retries SYNs (6: ~127 s): scaled
	// too, or an app would still be backing off long after a scaled
	// outage ended, which the real one would not.
	syn := tcpSynRetriesFor(time.Duration(float64(127*time.Second) / r.scale))
	for _, m := range r.f.Members() {
		err := errors.Join(r.f.Sysctl(ctx, m.Name, "net/ipv4/tcp_retries2", strconv.Itoa(retries)),
			r.f.Sysctl(ctx, m.Name, "net/ipv4/tcp_syn_retries", strconv.Itoa(syn)))
		if errors.Is(err, clusters.ErrUnsupported) {
			r.log.Info("the provider cannot scale TCP's retransmission limits; a long outage may reset connections the scaled scenario would keep", "provider", r.f.Provider())
			return
		}
		if err != nil {
			r.log.Warn("could not scale TCP's retransmission limits", "node", m.Name, "err", err)
		}
	}
	r.log.Info("scaled TCP's retransmission limits", "tcp_retries2", retries, "tcp_syn_retries", syn)
}

// tcpSynRetriesFor is the smallest tcp_syn_retries (at least 1) whose
// give-up time (1 s, doubling: 2^(n+1)-1 s) is at least d.
func tcpSynRetriesFor(d time.Duration) int {
	for n := 1; n < 6; n++ {
		if time.Duration(1<<(n+1)-1)*time.Second >= d {
			return n
		}
	}
	return 6
}

// tcpRetriesFor is the smallest tcp_retries2 whose give-up time (RTO from
// 200 ms, doubling, capped at 120 s) is at least d.
func tcpRetriesFor(d time.Duration) int {
	total, rto := 0.0, 0.2
	for n := 1; n <= 15; n++ {
		total += rto
		rto = math.Min(2*rto, 120)
		if time.Duration((total+rto)*float64(time.Second)) >= d {
			return n
		}
	}
	return 15
}

func (r *run) holdDown() time.Duration {
	f := r.sc.Spec.Runtime.Failover
	if f.HoldDown == 0 {
		f.HoldDown = scenarios.Duration(float64(10*time.Second) * r.scale)
	}
	return scenarios.Scaled(f.HoldDown, r.scale, 2*time.Second)
}

// deployRuntime starts edgeguard serve on every node (and, with failover,
// on every gateway) and returns the nodes it runs on.
func (r *run) deployRuntime(ctx context.Context) ([]string, error) {
	rt := r.sc.Spec.Runtime
	g := rt.Gate
	speedURL, sinkURL, dnsFlags := r.cloudURLs()
	common := append([]string{"serve", fmt.Sprintf("--listen=:%d", GatePort), "--server=" + speedURL}, dnsFlags...)
	if g.MinDownload != "" {
		common = append(common, "--min-download="+g.MinDownload)
	}
	if g.MaxLatency > 0 {
		common = append(common, "--max-latency="+g.MaxLatency.D().String())
	}
	iv := g.Interval
	if iv == 0 {
		iv = scenarios.Duration(2 * time.Second)
	}
	common = append(common, "--interval="+scenarios.Scaled(iv, r.scale, time.Second).String())
	if g.FullTest != nil && !*g.FullTest {
		common = append(common, "--no-full-test")
	} else {
		fd := g.FullDuration
		if fd == 0 {
			fd = scenarios.Duration(3 * time.Second)
		}
		common = append(common, "--full-duration="+fd.D().String())
		if g.ConfirmSpread > 0 {
			common = append(common, "--confirm-spread="+g.ConfirmSpread.D().String())
		}
	}
	fo := rt.Failover
	if fo.Enabled {
		fi := fo.Interval
		if fi == 0 {
			fi = scenarios.Duration(float64(500*time.Millisecond) * r.scale)
		}
		common = append(common, "--failover-interval="+scenarios.Scaled(fi, r.scale, 200*time.Millisecond).String(),
			"--failover-hold-down="+r.holdDown().String())
	}
	cloud, err := r.f.Member(clusters.CloudName)
	if err != nil {
		return nil, err
	}
	// Nodes behind one gateway share its uplink: their runtimes agree on
	// the flush over their LAN.
	behind := map[string][]string{} // gateway -> its nodes
	lanAddr := map[string]string{}  // node -> its LAN address
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Role == clusters.RoleNode && m.Gateway != "" {
			mm, err := r.f.Member(m.Name)
			if err != nil {
				return nil, err
			}
			behind[m.Gateway] = append(behind[m.Gateway], m.Name)
			lanAddr[m.Name] = mm.Address
		}
	}
	gwAddr := map[string]string{}
	siteGws := map[string][]string{}
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Role == "gateway" && fo.Enabled {
			mm, err := r.f.Member(m.Name)
			if err != nil {
				return nil, err
			}
			gwAddr[m.Name] = mm.Address
			siteGws[m.Site] = append(siteGws[m.Site], m.Name)
		}
	}
	// Where the fleet runs the runtime as pods (kind), a node's runtime
	// is a pod on its kubelet, its binary the image's.
	var podImage, podEntry string
	if rp, ok := r.f.(clusters.RuntimePods); ok {
		if podImage, podEntry, err = rp.RuntimeImage(ctx, r.o.Edgeguard); err != nil {
			return nil, fmt.Errorf("the runtime runs as pods on %s: %w", r.f.Provider(), err)
		}
		r.log.Info("the runtime runs as a pod on each node", "image", podImage)
		r.res.Runtime += "; a pod on each node (" + podImage + ")"
	}
	var nodes []string
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Role == clusters.RoleGateway && !fo.Enabled {
			continue // a gateway runs the runtime only for failover
		}
		paths, err := r.f.Paths(m.Name)
		if err != nil {
			return nil, err
		}
		argv := append([]string{r.o.Edgeguard}, common...)
		argv = append(argv, "--node="+m.Name, "--events="+path.Join(paths.Evidence, m.Name+"-runtime.jsonl"))
		switch m.Role {
		case "node":
			durability := rt.Buffer.Durability
			if durability == "" {
				durability = "disk"
			}
			argv = append(argv, "--buffer="+path.Join(paths.Data, "buffer.db"), "--sink="+sinkURL, "--durability="+durability)
			if rt.Buffer.NoJitter {
				argv = append(argv, "--forward-no-jitter")
			}
			if peers := behind[m.Gateway]; len(peers) > 1 {
				argv = append(argv, "--site="+m.Gateway)
				for _, p := range peers {
					if p != m.Name {
						argv = append(argv, "--site-peer="+net.JoinHostPort(lanAddr[p], strconv.Itoa(site.DefaultPort)))
					}
				}
			}
			if fo.Enabled {
				argv = append(argv, "--failover-primary="+gwAddr[m.Gateway])
				for _, alt := range siteGws[m.Site] {
					if alt != m.Gateway {
						argv = append(argv, "--failover-alternate="+gwAddr[alt])
						break
					}
				}
			}
		case "gateway":
			if !fo.Enabled {
				continue
			}
			kc, err := r.f.MemberKubeconfig(m.Name)
			if err != nil {
				return nil, err
			}
			argv = append(argv, "--failover-primary="+cloud.Address, "--kubeconfig="+kc)
			if len(fo.Actions) > 0 {
				argv = append(argv, "--failover-actions="+strings.Join(fo.Actions, ","))
			}
		}
		image := ""
		if podImage != "" && m.Role == clusters.RoleNode {
			image, argv[0] = podImage, podEntry
		}
		if err := r.sup.run(ctx, m.Name, "runtime", clusters.Command{Argv: argv, Image: image, Env: []string{"EDGEGUARD_SINK_TOKEN=" + r.cloud.SinkToken(m.Name)}}); err != nil {
			return nil, err
		}
		nodes = append(nodes, m.Name)
	}
	r.log.Info("runtime deployed", "members", len(nodes), "settings", r.res.Runtime)
	return nodes, nil
}

// waitReady waits until every runtime answers and every node's gate has
// opened (the scenario starts from a working fleet): up to 2 minutes, and
// a second more per node beyond twenty, since every gate confirms its
// link with a speed test at start and a hundred of them share this
// machine's cores.
func (r *run) waitReady(ctx context.Context, members []string) error {
	deadline := time.Now().Add(2*time.Minute + time.Duration(max(len(members)-20, 0))*time.Second)
	last := time.Now()
	for i, name := range members {
		if time.Since(last) > 15*time.Second {
			r.log.Info("waiting for the gates to open", "open", i, "of", len(members))
			last = time.Now()
		}
		g, err := GateOn(r.f, name)
		if err != nil {
			return err
		}
		if _, err := g.WaitState(ctx, wire.Open, time.Until(deadline)); err != nil {
			return fmt.Errorf("the runtime on %s did not become ready before the timeline (its log: %s): %w", name, filepath.Join(r.o.Reports, r.sc.Metadata.Name, "logs", name+"-runtime.log"), err)
		}
	}
	r.log.Info("every gate is open; the fleet is ready")
	return nil
}

// deployWorkloads starts the scenario's workloads on their nodes.
func (r *run) deployWorkloads(ctx, obsCtx context.Context, obs *sync.WaitGroup) error {
	gate := fmt.Sprintf("http://127.0.0.1:%d", GatePort)
	for _, w := range r.sc.Spec.Workloads {
		if w.OnCloud() {
			continue // started before the runtime (deployCloudWorkloads)
		}
		ms, err := r.sc.Spec.Resolve(w.On)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Role != "node" {
				continue
			}
			paths, err := r.f.Paths(m.Name)
			if err != nil {
				return err
			}
			evf := "--events=" + path.Join(paths.Evidence, m.Name+"-"+w.Name+".jsonl")
			base := []string{r.o.Edgeguard, "workload"}
			var argv, env []string
			var sb *clusters.Sandbox
			switch w.Type {
			case scenarios.WorkloadFetch:
				g := gate
				if r.sc.Spec.Runtime.Gate.Bypassed() {
					g = "none"
				}
				argv = append(base, "fetch", "--node="+m.Name, evf, "--gate="+g, "--content="+r.cloud.ContentURL, "--period="+r.period(w, 5*time.Second, 500*time.Millisecond).String(), "--timeout=10s")
			case scenarios.WorkloadProduce:
				argv = append(base, "produce", "--node="+m.Name, evf, "--to="+gate, "--stream="+stream(w), "--period="+r.period(w, time.Second, 50*time.Millisecond).String())
				if w.Size != "" {
					n, _ := units.ParseSize("size", w.Size) // checked by the loader
					argv = append(argv, fmt.Sprintf("--size=%d", n))
				}
			case scenarios.WorkloadServe:
				argv = append(base, "serve", "--node="+m.Name, evf, "--to="+gate, "--stream="+stream(w), fmt.Sprintf("--listen=:%d", PayPort))
			case scenarios.WorkloadCommand:
				argv = w.Command
				if env, sb, err = r.appEnv(m.Name, w, paths); err != nil {
					return err
				}
				env = append(env, "EDGEGUARD_URL="+gate, "CONTENT_URL="+r.cloud.ContentURL, "SINK_URL="+r.cloud.SinkURL)
				if w.Image == "" {
					// The runtime's binary has clients an app may use
					// (edgeguard workload produce ...).
					env = append(env, "EDGEGUARD="+r.o.Edgeguard)
				}
			}
			// An image runs as a pod on the node (providers whose Info
			// says Images), its command in the image (or the image's own).
			if err := r.sup.run(ctx, m.Name, "workload/"+w.Name, clusters.Command{Argv: argv, Env: env, Image: w.Image, Sandbox: sb}); err != nil {
				return err
			}
			if err := r.waitWorkload(ctx, m.Name, w); err != nil {
				return err
			}
			if w.Type == scenarios.WorkloadServe {
				host, err := r.f.Host(m.Name)
				if err != nil {
					return err
				}
				if err := waitHTTP(ctx, host, fmt.Sprintf("http://127.0.0.1:%d/healthz", PayPort), 10*time.Second); err != nil {
					return fmt.Errorf("the local service on %s did not come up: %w", m.Name, err)
				}
				if err := customers(obsCtx, obs, r.ev, r.f, m.Name, m.Gateway, PayPort, r.period(w, 2*time.Second, 100*time.Millisecond)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func stream(w scenarios.Workload) string {
	if w.Stream != "" {
		return w.Stream
	}
	return w.Name
}

func (r *run) period(w scenarios.Workload, def, floor time.Duration) time.Duration {
	p := w.Period
	if p == 0 {
		p = scenarios.Duration(def)
	}
	return scenarios.Scaled(p, r.scale, floor)
}
