package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/validators"
)

// RunOptions configures Run and Certify.
type RunOptions struct {
	// Provider brings the fleet up. What it cannot model (Info) is
	// refused before anything starts.
	Provider clusters.Provider
	// TimeScale overrides the scenarios' own scale (0: theirs).
	TimeScale float64
	// Keep leaves the fleet up afterwards, for debugging.
	Keep bool
	// Reports is the report directory (default "reports").
	Reports string
	// Edgeguard is the runtime binary (default: FindEdgeguard).
	Edgeguard string
	// Settle bounds the wait after the timeline for the runtime to settle
	// (gates open, buffers empty): network time, not scaled. Default 90 s.
	Settle time.Duration
	// FleetPrefix starts the name of each scenario's fleet (default
	// "ef-"; the name is cut to 12 characters).
	FleetPrefix string
	Log         *slog.Logger
}

func (o *RunOptions) defaults() error {
	if o.Provider == nil {
		return errors.New("harness: RunOptions.Provider is required")
	}
	if o.Reports == "" {
		o.Reports = "reports"
	}
	if o.FleetPrefix == "" {
		o.FleetPrefix = "ef-"
	}
	if o.Settle == 0 {
		o.Settle = 90 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Edgeguard == "" {
		p, err := FindEdgeguard()
		if err != nil {
			return err
		}
		o.Edgeguard = p
	}
	return nil
}

// Ports of the sample workloads' services on a node.
const PayPort = 9090

// Supports says whether a provider with info can model sc, and whether sc
// asks its validators only what they do, before anything starts; the
// error says why not and what would.
func Supports(info clusters.Info, sc *scenarios.Scenario) error {
	if err := validators.Check(sc); err != nil {
		return err
	}
	name := sc.Metadata.Name
	for _, st := range sc.Spec.Timeline {
		ms, err := sc.Spec.Resolve(st.Group)
		if err != nil {
			return err
		}
		act := sc.Spec.Action(st)
		for _, m := range ms {
			shapes := act.Process == ""
			switch {
			case shapes && m.Role == clusters.RoleNode && !info.NodeLinks:
				return fmt.Errorf("scenario %s: the timeline impairs node %s's own link, but provider %s shapes only uplinks: impair its gateway instead, or use a provider with per-node links (netns)", name, m.Name, info.Name)
			case m.Role == clusters.RoleGateway && !info.Gateways:
				return fmt.Errorf("scenario %s: the timeline acts on gateway %s, but provider %s has no gateway members: use a provider that models gateways (netns)", name, m.Name, info.Name)
			}
		}
	}
	if !info.Gateways {
		for _, s := range sc.Spec.Topology.Sites {
			if len(s.Buildings) > 0 {
				return fmt.Errorf("scenario %s: site %s has buildings (a gateway each), but provider %s has no gateway members: use a provider that models gateways (netns)", name, s.Name, info.Name)
			}
		}
	}
	if !info.ControlPlanes {
		if sc.Spec.Runtime.Failover.Enabled {
			return fmt.Errorf("scenario %s: failover marks Nodes in the site's Kubernetes API, but provider %s starts no control planes (netns: with edgefault setup done)", name, info.Name)
		}
		for _, x := range sc.Spec.Expect {
			if validators.NeedsKube(x.Validator) {
				return fmt.Errorf("scenario %s: validator %s reads the site's Kubernetes API, but provider %s starts no control planes (netns: with edgefault setup done)", name, x.Validator, info.Name)
			}
		}
	}
	for _, w := range sc.Spec.Workloads {
		switch {
		case w.Image != "" && !info.Images:
			return fmt.Errorf("scenario %s: workload %q runs image %s, but provider %s runs commands, not images: give it a command instead, or use a provider that runs images (kind)", name, w.Name, w.Image, info.Name)
		case w.Image == "" && !info.Commands:
			return fmt.Errorf("scenario %s: workload %q is a command, but provider %s runs only images: give it an image", name, w.Name, info.Name)
		}
	}
	for _, st := range sc.Spec.Timeline {
		// The runtime's settings may have been overridden (--failover
		// off) since the file was checked.
		if sc.Spec.Action(st).Process == "runtime" {
			ms, _ := sc.Spec.Resolve(st.Group)
			for _, m := range ms {
				if m.Role == clusters.RoleGateway && !sc.Spec.Runtime.Failover.Enabled {
					return fmt.Errorf("scenario %s: the timeline stops the runtime on gateway %s, which runs none with failover off", name, m.Name)
				}
			}
		}
	}
	return nil
}

// run is one scenario being played.
type run struct {
	o      RunOptions
	sc     *scenarios.Scenario
	scale  float64
	log    *slog.Logger
	f      clusters.Fleet
	cloud  *Cloud
	sh     clusters.LinkShaper
	ev     *evidenceLogs
	sup    *supervisor
	evDir  string
	res    *ScenarioResult
	t0     time.Time
	mu     sync.Mutex
	wins   []validators.Window
	active map[string]int // target -> index in wins of its open window
	groups []string       // the timeline group of each window
	steps  []int          // the timeline step of each window
}

// activeStep is the timeline step whose impairment target has now (-1:
// none).
func (r *run) activeStep(target string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.active[target]; ok {
		return r.steps[i]
	}
	return -1
}

// Run plays one scenario on a fresh embedded fleet: fleet up, runtime and
// workloads deployed, timeline played, settle, validators, fleet down
// (unless Keep). The result says what passed; a run that could not be
// played has Error set and Pass false.
func Run(ctx context.Context, sc *scenarios.Scenario, o RunOptions) ScenarioResult {
	start := time.Now()
	scale := sc.Scale(o.TimeScale)
	res := ScenarioResult{Name: sc.Metadata.Name, Description: sc.Metadata.Description, Source: sc.Source, TimeScale: scale,
		Runtime: runtimeWords(sc.Spec.Runtime), Timeline: scenarios.Scaled(sc.Spec.Duration, scale, 0), Started: start}
	if err := o.defaults(); err != nil {
		res.Error = err.Error()
		return res
	}
	if err := Supports(o.Provider.Info(), sc); err != nil {
		res.Error = err.Error()
		return res
	}
	r := &run{o: o, sc: sc, scale: scale, log: o.Log.With("scenario", sc.Metadata.Name), res: &res, active: map[string]int{}}
	err := r.play(ctx)
	if err != nil {
		res.Error = err.Error()
		r.log.Error("the run failed", "err", err)
	}
	res.Pass = err == nil && len(res.Verdicts) > 0
	for _, v := range res.Verdicts {
		res.Pass = res.Pass && v.Pass
	}
	res.Duration = time.Since(start)
	return res
}

func runtimeWords(rt scenarios.RuntimeSpec) string {
	var p []string
	if rt.Gate.Bypassed() {
		p = append(p, "gate bypassed")
	} else {
		p = append(p, "gate on")
	}
	if rt.Buffer.Durability == "memory" {
		p = append(p, "buffer in memory only")
	} else {
		p = append(p, "buffer on disk")
	}
	if rt.Failover.Enabled {
		p = append(p, "failover on")
	} else {
		p = append(p, "failover off")
	}
	return strings.Join(p, ", ")
}

func (r *run) play(ctx context.Context) (err error) {
	name := r.o.FleetPrefix + r.sc.Metadata.Name
	if len(name) > 12 {
		name = name[:12]
	}
	r.log.Info("bringing up the fleet", "fleet", name, "timeScale", r.scale, "timeline", r.res.Timeline)
	r.f, err = r.o.Provider.Up(ctx, name, &r.sc.Spec.Topology)
	if err != nil {
		return fmt.Errorf("fleet up (provider %s): %w", r.o.Provider.Name(), err)
	}
	r.res.Provider = r.f.Provider()
	defer func() {
		if r.o.Keep {
			r.log.Info("leaving the fleet up (--keep); take it down with: edgefault fleet down --provider " + r.f.Provider() + " --name " + name)
			return
		}
		r.log.Info("taking the fleet down", "fleet", name)
		if derr := r.o.Provider.Down(context.Background(), name); derr != nil && err == nil {
			err = fmt.Errorf("fleet down: %w", derr)
		}
	}()
	// The harness's own evidence goes straight next to the report; the
	// members' evidence and logs are collected there when the run ends.
	dir := filepath.Join(r.o.Reports, r.sc.Metadata.Name)
	if r.evDir, err = freshEvidence(dir); err != nil {
		return err
	}
	r.res.Evidence = r.evDir
	r.ev = newEvidenceLogs(r.evDir, r.o.Log)
	collected := false
	// Runs before the fleet goes: whatever happened, the evidence and the
	// workloads' logs stay next to the report.
	defer func() {
		r.ev.close()
		if collected {
			return
		}
		if cerr := r.f.Collect(context.Background(), dir); cerr != nil && err == nil {
			err = fmt.Errorf("collect evidence: %w", cerr)
		}
	}()
	r.scaleTCP(ctx)
	if r.cloud, err = StartCloud(ctx, r.f, r.o.Edgeguard); err != nil {
		return err
	}
	defer r.cloud.Stop()
	if r.sh, err = r.f.LinkShaper(ctx); err != nil {
		return err
	}
	defer r.sh.Close()
	r.sup = &supervisor{f: r.f, ev: r.ev, log: r.log}
	defer r.sup.stopAll()

	obsCtx, stopObs := context.WithCancel(ctx)
	var obs sync.WaitGroup
	defer func() { stopObs(); obs.Wait() }()
	nodes, err := r.deployRuntime(ctx)
	if err != nil {
		return err
	}
	var sites []string
	for _, s := range r.sc.Spec.Topology.Sites {
		sites = append(sites, s.Name)
	}
	if r.o.Provider.Info().ControlPlanes {
		if err := watchNodes(obsCtx, &obs, r.ev, r.f, sites, 250*time.Millisecond); err != nil {
			return err
		}
	}
	if err := r.waitReady(ctx, nodes); err != nil {
		return err
	}
	if err := r.deployWorkloads(ctx, obsCtx, &obs); err != nil {
		return err
	}
	sampler(obsCtx, &obs, r.ev, r.f, nodes, 500*time.Millisecond)

	r.t0 = time.Now()
	r.res.Started = r.t0
	r.log.Info("playing the timeline", "steps", len(r.sc.Spec.Timeline), "length", r.res.Timeline)
	if err := r.timeline(ctx); err != nil {
		return err
	}
	r.settle(ctx, nodes)
	end := time.Now()

	// Stop the observers and workloads, then read what the sink has.
	stopObs()
	obs.Wait()
	r.sup.stopAll()
	streams, serr := r.cloud.Streams(ctx)
	if serr != nil {
		return fmt.Errorf("read the sink's records: %w", serr)
	}
	r.ev.close()
	collected = true
	if err := r.f.Collect(ctx, dir); err != nil {
		return fmt.Errorf("collect evidence: %w", err)
	}
	r.res.Backend = r.sh.Backend()
	evs, err := mergeEvidence(r.evDir)
	if err != nil {
		return err
	}
	e := &validators.Evidence{Scenario: r.sc, Start: r.t0, End: end, Events: evs, Streams: streams, Windows: r.wins}
	if r.sc.Spec.Runtime.Failover.Enabled {
		e.HoldDown = r.holdDown()
	}
	r.res.Verdicts = validators.Judge(e)
	r.res.Windows, r.res.Nodes = r.charts(evs, end)
	return nil
}

// scaleTCP scales the kernel's give-up time for established connections
// with the scenario (DESIGN.md, evidence and time): 15 retransmissions
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
	common := []string{"serve", fmt.Sprintf("--listen=:%d", GatePort), "--server=" + r.cloud.SpeedURL}
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
	gwAddr := map[string]string{}
	siteGws := map[string][]string{}
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Role == "gateway" {
			mm, err := r.f.Member(m.Name)
			if err != nil {
				return nil, err
			}
			gwAddr[m.Name] = mm.Address
			siteGws[m.Site] = append(siteGws[m.Site], m.Name)
		}
	}
	var nodes []string
	for _, m := range r.sc.Spec.Topology.Members() {
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
			argv = append(argv, "--buffer="+path.Join(paths.Data, "buffer.db"), "--sink="+r.cloud.SinkURL, "--durability="+durability)
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
		if err := r.sup.start(ctx, m.Name, "runtime", argv); err != nil {
			return nil, err
		}
		nodes = append(nodes, m.Name)
	}
	r.log.Info("runtime deployed", "members", len(nodes), "settings", r.res.Runtime)
	return nodes, nil
}

// waitReady waits until every runtime answers and every node's gate has
// opened (the scenario starts from a working fleet), up to 2 minutes.
func (r *run) waitReady(ctx context.Context, members []string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for _, name := range members {
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
			switch w.Type {
			case scenarios.WorkloadFetch:
				g := gate
				if r.sc.Spec.Runtime.Gate.Bypassed() {
					g = "none"
				}
				argv = append(base, "fetch", "--node="+m.Name, evf, "--gate="+g, "--content="+r.cloud.ContentURL, "--period="+r.period(w, 5*time.Second, 500*time.Millisecond).String(), "--timeout=10s")
			case scenarios.WorkloadProduce:
				argv = append(base, "produce", "--node="+m.Name, evf, "--to="+gate, "--stream="+stream(w), "--period="+r.period(w, time.Second, 50*time.Millisecond).String())
			case scenarios.WorkloadServe:
				argv = append(base, "serve", "--node="+m.Name, evf, "--to="+gate, "--stream="+stream(w), fmt.Sprintf("--listen=:%d", PayPort))
			case scenarios.WorkloadCommand:
				argv = w.Command
				env = []string{"EDGEGUARD_URL=" + gate, "CONTENT_URL=" + r.cloud.ContentURL, "SINK_URL=" + r.cloud.SinkURL, "EVIDENCE_DIR=" + paths.Evidence}
			}
			if err := r.sup.start(ctx, m.Name, "workload/"+w.Name, argv, env...); err != nil {
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

// action is one thing the timeline does at a scaled time.
type action struct {
	at   time.Duration
	step scenarios.Step
	idx  int  // the step's index in the timeline
	undo bool // the automatic restore of a step with For
}

// timeline plays the steps, with their automatic restores, in time order,
// logging progress, and then waits out the scenario's duration.
func (r *run) timeline(ctx context.Context) error {
	var acts []action
	for i, st := range r.sc.Spec.Timeline {
		acts = append(acts, action{at: scenarios.Scaled(st.At, r.scale, 0), step: st, idx: i})
		if st.For > 0 {
			acts = append(acts, action{at: scenarios.Scaled(st.At+st.For, r.scale, 0), step: st, idx: i, undo: true})
		}
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	total := r.res.Timeline
	for _, a := range append(acts, action{at: total}) {
		if d := time.Until(r.t0.Add(a.at)); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		if a.at == total && a.step.Group == "" {
			break
		}
		if err := r.do(ctx, a); err != nil {
			return fmt.Errorf("timeline step at %v (%s): %w", a.step.At.D(), a.step.Group, err)
		}
	}
	// What is still impaired when the timeline ends is restored: the
	// settle and the validators judge recovery from a known point.
	r.mu.Lock()
	var still []string
	for t := range r.active {
		still = append(still, t)
	}
	r.mu.Unlock()
	sort.Strings(still)
	for _, t := range still {
		r.log.Info("restoring what is still impaired at the end of the timeline", "target", t)
		if err := r.restore(ctx, t); err != nil {
			return err
		}
	}
	r.log.Info("timeline done", "elapsed", time.Since(r.t0).Round(100*time.Millisecond))
	return nil
}

// restore returns target's link to the topology's own profile (a store's
// DSL line stays a DSL line), or unshaped if it had none, and ends its
// window at the moment the restore began.
func (r *run) restore(ctx context.Context, target string) error {
	var own *scenarios.LinkProfile
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Name == target {
			own = m.Link
		}
	}
	at := time.Now()
	var err error
	if own != nil {
		imp, _ := own.Impairment(target)
		err = r.sh.Apply(ctx, target, imp)
	} else {
		err = r.sh.Clear(ctx, target)
	}
	if err != nil {
		return err
	}
	r.endWindow(target, at)
	r.ev.emit(target, "timeline", "restore")
	return nil
}

func (r *run) do(ctx context.Context, a action) error {
	st := a.step
	ms, err := r.sc.Spec.Resolve(st.Group)
	if err != nil {
		return err
	}
	act := r.sc.Spec.Action(st)
	if a.undo {
		act = scenarios.Action{Kind: "restore", What: "restore"}
	}
	what, imp := act.What, act.Impairment
	if st.For > 0 && !a.undo {
		what += fmt.Sprintf(" for %v", scenarios.Scaled(st.For, r.scale, 0))
	}
	r.log.Info(fmt.Sprintf("t+%.1fs/%.0fs %s: %s", time.Since(r.t0).Seconds(), r.res.Timeline.Seconds(), st.Group, what), "note", st.Note)
	for _, m := range ms {
		switch {
		case act.Process != "":
			if err := r.sup.kill(m.Name, act.Process, act.Graceful); err != nil {
				return err
			}
			r.ev.emit(m.Name, "timeline", act.Kind, "process", act.Process, "note", st.Note)
		case act.Impairs:
			if err := r.sh.Apply(ctx, m.Name, imp); err != nil {
				return err
			}
			r.startWindow(m.Name, st.Group, a.idx, imp)
			r.ev.emit(m.Name, "timeline", "impair", "what", imp.String(), "note", st.Note)
		case act.Kind == "restore":
			// A step's own "for" restores only its own impairment: a
			// later step on the same target has replaced it.
			if a.undo && r.activeStep(m.Name) != a.idx {
				r.log.Info("not restoring: a later step changed the link since", "target", m.Name)
				continue
			}
			if err := r.restore(ctx, m.Name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("the harness cannot play a %s step", act.Kind)
		}
	}
	return nil
}

func (r *run) startWindow(target, group string, step int, imp impair.Impairment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, step)
	now := time.Now()
	if i, ok := r.active[target]; ok {
		r.wins[i].End = now
	}
	r.wins = append(r.wins, validators.Window{Target: target, Start: now, Outage: imp.Outage, RateBps: float64(imp.Rate), Delay: imp.Delay, Loss: imp.Loss, What: describe(imp)})
	r.active[target] = len(r.wins) - 1
	r.groups = append(r.groups, group)
}

func describe(imp impair.Impairment) string {
	if imp.Outage {
		return "outage"
	}
	return imp.String()
}

func (r *run) endWindow(target string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.active[target]; ok {
		r.wins[i].End = at
		delete(r.active, target)
	}
}

// settle waits, up to Settle, until every node's gate is open and its
// buffer empty: what the network takes after the timeline is not scaled.
func (r *run) settle(ctx context.Context, nodes []string) {
	deadline := time.Now().Add(r.o.Settle)
	start := time.Now()
	for _, name := range nodes {
		m, err := r.f.Member(name)
		if err != nil || m.Role != clusters.RoleNode {
			continue
		}
		g, err := GateOn(r.f, name)
		if err != nil {
			continue
		}
		for time.Now().Before(deadline) && ctx.Err() == nil {
			var b buffer.Stats
			s, err := g.Status(ctx)
			if err == nil && s.State == wire.Open && g.Get(ctx, "/v1/buffer", &b) == nil && b.Records == 0 {
				// What settle saw is evidence like any sample.
				r.ev.emitTyped(name, "sampler", "sample", wire.Sample{Gate: s.State, Depth: &b.Records, By: "settle"})
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	// One more sample interval, so the evidence shows the settled state.
	time.Sleep(time.Second)
	if time.Now().After(deadline) {
		r.log.Warn("the runtime did not settle (a gate still shut or a buffer not empty); the validators will say where", "after", r.o.Settle)
		return
	}
	r.log.Info("settled", "after", time.Since(start).Round(100*time.Millisecond))
}

// charts turns the windows and the samples into the report's series.
func (r *run) charts(evs []wire.Event, end time.Time) ([]Window, []NodeSeries) {
	var ws []Window
	for i, w := range r.wins {
		g := ""
		if i < len(r.groups) {
			g = r.groups[i]
		}
		ws = append(ws, Window{Target: w.Target, Group: g, What: w.What, Outage: w.Outage, Start: w.Start.Sub(r.t0), End: w.End.Sub(r.t0)})
	}
	series := map[string]*NodeSeries{}
	var order []string
	type counted struct {
		at     time.Time
		rx, tx int64
	}
	last := map[string]counted{}
	for _, e := range evs {
		if e.Component != "sampler" || e.Event != "sample" || e.Time.Before(r.t0) || e.Time.After(end) {
			continue
		}
		s, ok := series[e.Node]
		if !ok {
			s = &NodeSeries{Node: e.Node, Role: "node"}
			for _, m := range r.sc.Spec.Topology.Members() {
				if m.Name == e.Node {
					s.Role, s.Gateway = m.Role, m.Gateway
				}
			}
			series[e.Node] = s
			order = append(order, e.Node)
		}
		var ws wire.Sample
		if err := e.Decode(&ws); err != nil {
			r.log.Warn("a sample the charts cannot read", "err", err)
			continue
		}
		smp := Sample{T: e.Time.Sub(r.t0), Gate: string(ws.Gate), Failover: ws.Failover}
		if ws.Depth != nil {
			smp.BufferDepth = *ws.Depth
		}
		if p, ok := last[e.Node]; ok && ws.Rx != nil && ws.Tx != nil {
			dt := e.Time.Sub(p.at).Seconds()
			if dt > 0 && *ws.Rx >= p.rx && *ws.Tx >= p.tx {
				smp.RxBps, smp.TxBps = 8*float64(*ws.Rx-p.rx)/dt, 8*float64(*ws.Tx-p.tx)/dt
			}
		}
		if ws.Rx != nil && ws.Tx != nil {
			last[e.Node] = counted{e.Time, *ws.Rx, *ws.Tx}
		}
		s.Samples = append(s.Samples, smp)
	}
	var out []NodeSeries
	for _, n := range order {
		out = append(out, *series[n])
	}
	return ws, out
}
