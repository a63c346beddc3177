package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/internal/nameserver"
	"github.com/edgefault/edgefault/internal/procmem"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// DefaultAppUID is the first user apps run as: above the range
// distributions give to people and system services, below the ranges
// user-namespace containers are given by default.
const DefaultAppUID = 70000

// RunOptions configures Run and Certify.
type RunOptions struct {
	// Provider brings the fleet up. What it cannot model (Info) is
	// refused before anything starts.
	Provider clusters.Provider
	// TimeScale overrides the scenarios' own scale (0: theirs).
	TimeScale float64
	// Seed is what loss and jitter draw from (0: the scenario's seed, or
	// a fresh one); the result says which was used.
	Seed uint64
	// Keep leaves the fleet up afterwards, for debugging.
	Keep bool
	// Reports is the report directory (default "reports").
	Reports string
	// Edgeguard is the runtime binary (default: FindEdgeguard).
	Edgeguard string
	// Settle bounds the wait after the timeline for the runtime to settle
	// (gates open, buffers empty): network time, not scaled. Default 90 s.
	Settle time.Duration
	// AppUID is the user the first command workload (a user's app) runs
	// as, the next AppUID+1 and so on, each with the same group ID: no
	// capabilities, none of the harness's state but its own data
	// directory and evidence file (default DefaultAppUID).
	AppUID int
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
	if o.AppUID == 0 {
		o.AppUID = DefaultAppUID
	}
	if o.AppUID < 1000 || o.AppUID > 1<<31-1<<16 {
		return fmt.Errorf("harness: app uid %d: use an unprivileged range nobody on this machine uses, 1000 to %d (default %d)", o.AppUID, 1<<31-1<<16, DefaultAppUID)
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
	active map[string]int      // target -> index in wins of its open window
	traces map[string]traceRun // target -> the trace playing on its link
	full   map[string]bool     // nodes whose disk a diskFull step has filled
	// dns is the fleet's name server (nil: the timeline has no dns
	// step), at dnsAt; dnsFaults the faults in force, by gateway.
	dns       *nameserver.Server
	dnsAt     string
	dnsFaults map[string]dnsFault
	// traceErr is the first trace row that could not be applied: it
	// fails the timeline.
	traceErr error
	groups   []string         // the timeline group of each window
	steps    []int            // the timeline step of each window
	apps     []appFile        // the command workloads' own evidence files
	body     body             // nil: play the timeline
	shMu     sync.Mutex       // one change of links at a time (a live session's actions beside the timeline)
	tap      func(wire.Event) // sees every event of the harness's as it is recorded
	// onStep, if set, hears of each timeline step played (a live
	// session's page).
	onStep func(idx int)
	// uidLocks hold this run's app users (claimUID).
	uidLocks []*os.File
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
	return runWith(ctx, sc, o, nil, nil)
}

// body is what a run does between set-up and judging: play the timeline
// and settle (nil), or a live session's presenter (Live).
type body func(ctx context.Context, r *run, nodes []string) error

func runWith(ctx context.Context, sc *scenarios.Scenario, o RunOptions, b body, tap func(wire.Event)) ScenarioResult {
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
	if err := CheckTiming(sc, scale); err != nil {
		res.Error = err.Error()
		return res
	}
	res.Seed = cmp.Or(o.Seed, sc.Spec.Seed, rand.Uint64()|1)
	r := &run{o: o, sc: sc, scale: scale, log: o.Log.With("scenario", sc.Metadata.Name), res: &res, active: map[string]int{}, traces: map[string]traceRun{}, full: map[string]bool{}, dnsFaults: map[string]dnsFault{}, body: b, tap: tap}
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
	switch rt.Buffer.Durability {
	case "memory":
		p = append(p, "buffer in memory only")
	case "unsynced":
		p = append(p, "buffer on disk, unsynced")
	default:
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
		name = strings.TrimRight(name[:12], "-")
	}
	r.log.Info("bringing up the fleet", "fleet", name, "timeScale", r.scale, "timeline", r.res.Timeline, "seed", r.res.Seed)
	upStart := time.Now()
	r.f, err = r.o.Provider.Up(ctx, name, &r.sc.Spec.Topology)
	if err != nil {
		return fmt.Errorf("fleet up (provider %s): %w", r.o.Provider.Name(), err)
	}
	r.res.FleetUp = time.Since(upStart)
	r.res.Provider = r.f.Provider()
	if oc, ok := r.f.(clusters.OnCluster); ok {
		r.res.Cluster = oc.ClusterName()
		var where []string
		for _, m := range r.f.Members() {
			where = append(where, m.Name+": "+m.Location)
		}
		r.res.Placement = strings.Join(where, "; ")
		r.log.Info("the fleet is played by a cluster", "cluster", r.res.Cluster, "members", r.res.Placement)
	}
	if sc, ok := r.f.(clusters.SiteComponents); ok {
		for _, st := range r.sc.Spec.Topology.Sites {
			cp := "none"
			if c := sc.SiteComponents(st.Name); len(c) > 0 {
				cp = strings.Join(c, ", ")
			}
			r.res.Sites = append(r.res.Sites, SiteRun{Site: st.Name, ControlPlane: cp})
		}
	}
	defer func() {
		if r.o.Keep {
			r.log.Info("leaving the fleet up (--keep); take it down with: edgefault fleet down --provider " + r.f.Provider() + " --fleet " + name)
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
	r.ev.tap = r.tap
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
	if r.cloud, err = StartCloud(ctx, r.f, r.o.Edgeguard, WithSinkAdmission(r.sc.Spec.Runtime.Sink)); err != nil {
		return err
	}
	defer r.cloud.Stop()
	stopNS, err := r.startNameServer(ctx)
	if err != nil {
		return err
	}
	defer stopNS()
	if r.sh, err = r.f.LinkShaper(ctx); err != nil {
		return err
	}
	defer r.sh.Close()
	// Asking for the backend picks it: a kernel that cannot shape as asked
	// is found now, not at the first timeline step.
	r.res.Backend = r.sh.Backend()
	if err := r.seedOwnLinks(ctx); err != nil {
		return err
	}
	r.sup = &supervisor{f: r.f, ev: r.ev, log: r.log}
	defer r.releaseUIDs() // after the sweep
	defer r.sweepApps()   // after stopAll: deferred first
	defer r.sup.stopAll()
	if err := r.deployCloudWorkloads(ctx); err != nil {
		return err
	}

	if err := r.limitDisks(ctx); err != nil {
		return err
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	var obs sync.WaitGroup
	defer func() { stopObs(); obs.Wait() }()
	nodes, err := r.deployRuntime(ctx)
	if err != nil {
		return err
	}
	// Sites without a control plane have no Nodes to watch.
	var sites []string
	for _, s := range r.sc.Spec.Topology.Sites {
		if s.ControlPlane != scenarios.ControlPlaneNone {
			sites = append(sites, s.Name)
		}
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
	if err := r.watchApps(obsCtx, &obs); err != nil {
		return err
	}
	// Everything runs now: what the fleet costs, the harness included
	// (it is the customers, the sampler and the shaper).
	if mu, ok := r.f.(clusters.MemoryUse); ok {
		m := mu.Memory()
		// The harness alone: the fleet's processes are its children.
		self := procmem.One(os.Getpid())
		m.RSS += self.RSS
		m.Anon += self.Anon
		m.PSS += self.PSS
		m.Processes += self.Processes
		r.res.Memory = &m
		r.log.Info("the fleet is up and running", "fleetUp", r.res.FleetUp.Round(10*time.Millisecond), "processes", m.Processes,
			"rssMiB", m.RSS>>20, "anonMiB", m.Anon>>20, "pssMiB", m.PSS>>20)
	}

	r.t0 = time.Now()
	r.res.Started = r.t0
	if r.body != nil {
		if err := r.body(ctx, r, nodes); err != nil {
			return err
		}
	} else {
		r.log.Info("playing the timeline", "steps", len(r.sc.Spec.Timeline), "length", r.res.Timeline)
		if err := r.timeline(ctx); err != nil {
			return err
		}
		r.settle(ctx, nodes)
	}
	end := time.Now()

	// Stop the observers and workloads, let the runtime forward what
	// they had queued, then read what the sink has.
	stopObs()
	obs.Wait()
	r.sup.stopWorkloads()
	r.drain(ctx, nodes, 15*time.Second)
	r.sup.stopAll()
	r.sweepApps()
	streams, serr := r.cloud.Streams(ctx)
	if serr != nil {
		return fmt.Errorf("read the sink's records: %w", serr)
	}
	hashes, serr := r.cloud.Hashes(ctx, streams)
	if serr != nil {
		return fmt.Errorf("read what the sink holds under each key: %w", serr)
	}
	r.ev.close()
	// The cloud's last events (the sink's) are written before they are
	// collected.
	r.cloud.Stop()
	collected = true
	if err := r.f.Collect(ctx, dir); err != nil {
		return fmt.Errorf("collect evidence: %w", err)
	}
	evs, problems, err := mergeEvidence(r.evDir, r.apps)
	if err != nil {
		return err
	}
	e := &validators.Evidence{Scenario: r.sc, Start: r.t0, End: end, Events: evs, Streams: streams, Hashes: hashes, Windows: r.wins, AppProblems: problems}
	if r.sc.Spec.Runtime.Failover.Enabled {
		e.HoldDown = r.holdDown()
	}
	r.res.Verdicts = validators.Judge(e)
	r.res.Windows, r.res.Nodes = r.charts(evs, end)
	return nil
}

// settle waits, up to Settle, until every node's gate is open and its
// buffer empty (the evidence delivered-exactly-once reads): what the
// network takes after the timeline is not scaled.
func (r *run) settle(ctx context.Context, nodes []string) {
	deadline := time.Now().Add(r.o.Settle)
	start := time.Now()
	r.untilEachNode(ctx, nodes, deadline, 250*time.Millisecond, func(name string, g *Gate) bool {
		var b buffer.Stats
		s, err := g.Status(ctx)
		if err == nil && s.State == wire.Open && g.Get(ctx, "/v1/buffer", &b) == nil && b.Records == 0 {
			// What settle saw is evidence like any sample.
			r.ev.emitTyped(name, "sampler", "sample", wire.Sample{Gate: s.State, Depth: &b.Records, By: "settle"})
			return true
		}
		return false
	})
	// One more sample interval, so the evidence shows the settled state.
	time.Sleep(time.Second)
	if time.Now().After(deadline) {
		r.log.Warn("the runtime did not settle (a gate still shut or a buffer not empty); the validators will say where", "after", r.o.Settle)
		return
	}
	r.log.Info("settled", "after", time.Since(start).Round(100*time.Millisecond))
}

// drain waits, up to within in all, until every node's buffer is empty:
// a record acknowledged just before the end (a gate measuring holds the
// flush a moment) is forwarded before the runtime stops. A buffer that
// cannot drain (its link is down at the end) is left for the validators
// to judge.
func (r *run) drain(ctx context.Context, nodes []string, within time.Duration) {
	r.untilEachNode(ctx, nodes, time.Now().Add(within), 100*time.Millisecond, func(_ string, g *Gate) bool {
		var b buffer.Stats
		return g.Get(ctx, "/v1/buffer", &b) != nil || b.Records == 0
	})
}

// untilEachNode asks each node's runtime in turn, every period, until
// done says so or the deadline (shared by all) passes.
func (r *run) untilEachNode(ctx context.Context, nodes []string, deadline time.Time, every time.Duration, done func(name string, g *Gate) bool) {
	for _, name := range nodes {
		m, err := r.f.Member(name)
		if err != nil || m.Role != clusters.RoleNode {
			continue
		}
		g, err := GateOn(r.f, name)
		if err != nil {
			continue
		}
		for time.Now().Before(deadline) && ctx.Err() == nil && !done(name, g) {
			time.Sleep(every)
		}
	}
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
