package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
)

// Live is a scenario's fleet up with its runtime and workloads running and
// its timeline not played: a presenter (the dashboard) shapes links, plays
// steps and watches the runtime answer. Every action goes through the
// run's own code (the provider's shaper, the ledger, the evidence), so
// cleanup after a crash is a run's, and Stop judges the session as a run
// and returns its result for a report.
type Live struct {
	sc       *scenarios.Scenario
	ready    chan struct{} // closed when the fleet is up (r set)
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the session is judged
	stopOnce sync.Once
	res      ScenarioResult
	r        *run

	act        sync.Mutex // one action at a time, beside the timeline's
	playCancel context.CancelFunc
	playing    sync.WaitGroup  // the timeline being played, if any
	playCtx    context.Context // the current Play's (to tell it from an older one)
	timers     []*time.Timer   // steps' own restores to come

	mu      sync.Mutex
	seen    map[string]*liveSeen
	played  map[int]bool
	actions []LiveAction
	changed chan struct{} // closed and replaced on every change
}

// liveSeen is what the session last saw of a member.
type liveSeen struct {
	gate, failover string
	depth          *int64
	rx, tx         float64
	at             time.Time
	rxBps, txBps   float64
	mark           *wire.NodeMark
}

// LiveState is everything the dashboard shows, in one document.
type LiveState struct {
	Scenario    string       `json:"scenario"`
	Description string       `json:"description,omitempty"`
	Provider    string       `json:"provider"`
	Backend     string       `json:"backend"`
	TimeScale   float64      `json:"timeScale"`
	Started     time.Time    `json:"started"`
	Now         time.Time    `json:"now"`
	Members     []LiveMember `json:"members"`
	Profiles    []string     `json:"profiles"`
	Steps       []LiveStep   `json:"steps"`
	Playing     bool         `json:"playing"`
	Actions     []LiveAction `json:"actions"`
	Ended       bool         `json:"ended"`
	Limits      LiveLimits   `json:"limits"`
}

// LiveLimits says what the provider can impair.
type LiveLimits struct {
	NodeLinks bool `json:"nodeLinks"`
	Gateways  bool `json:"gateways"`
}

// LiveMember is a gateway or node with what is in force on its link and
// what its runtime and its Node say.
type LiveMember struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Site     string `json:"site"`
	Building string `json:"building,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	// Impairment is what is in force on its link ("" : nothing);
	// AsBuilt says it is the topology's own link, not the presenter's.
	Impairment string  `json:"impairment,omitempty"`
	AsBuilt    bool    `json:"asBuilt"`
	Outage     bool    `json:"outage,omitempty"`
	Gate       string  `json:"gate,omitempty"`
	Depth      *int64  `json:"depth,omitempty"`
	Failover   string  `json:"failover,omitempty"`
	RxBps      float64 `json:"rxBps"`
	TxBps      float64 `json:"txBps"`
	// The Node's marks in its site's cluster (failover's).
	Uplink        string `json:"uplink,omitempty"`
	Tainted       bool   `json:"tainted,omitempty"`
	Unschedulable bool   `json:"unschedulable,omitempty"`
}

// LiveStep is one of the scenario's timeline steps.
type LiveStep struct {
	Index  int    `json:"index"`
	At     string `json:"at"`
	Group  string `json:"group"`
	What   string `json:"what"`
	Note   string `json:"note,omitempty"`
	Played bool   `json:"played"`
}

// LiveAction is something the presenter did, and how it went.
type LiveAction struct {
	Time   time.Time `json:"time"`
	What   string    `json:"what"`
	Target string    `json:"target,omitempty"`
	Took   string    `json:"took,omitempty"`
	Err    string    `json:"err,omitempty"`
}

// Errors an action may end with besides the shaper's own.
var (
	// ErrSessionEnding: the session is being (or has been) stopped.
	ErrSessionEnding = errors.New("the session is ending")
	// ErrPlaying: the timeline is already being played.
	ErrPlaying = errors.New("the timeline is already playing: reset first")
)

// InputError is an action the session refuses for what it asked (an
// unknown member, a bad rate), not for what happened doing it.
type InputError struct{ Err error }

func (e InputError) Error() string { return e.Err.Error() }
func (e InputError) Unwrap() error { return e.Err }

// LiveProfiles are link conditions a presenter can pick by name besides
// the scenario's own (their figures: docs/scenarios.md's profiles).
var liveProfiles = map[string]scenarios.LinkProfile{
	"geo-satellite": {Rate: scenarios.SameRate("3mbit"), Delay: "300ms"},
	"lte-cell-edge": {Rate: scenarios.SameRate("1mbit"), Delay: "80ms", Loss: "1%"},
	"dsl":           {Rate: scenarios.SameRate("8mbit"), Delay: "20ms"},
	"edge-2g":       {Rate: scenarios.SameRate("200kbit"), Delay: "400ms", Loss: "2%"},
}

// StartLive brings sc's fleet up with its runtime and workloads, and
// returns once it is ready for the presenter (or why it could not be).
// The session lasts until Stop or until ctx ends.
func StartLive(ctx context.Context, sc *scenarios.Scenario, o RunOptions) (*Live, error) {
	l := &Live{sc: sc, ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[string]*liveSeen{}, played: map[int]bool{}, changed: make(chan struct{})}
	go func() {
		l.res = runWith(ctx, sc, o, l.body, l.tap)
		close(l.done)
		l.notify()
	}()
	select {
	case <-l.ready:
		return l, nil
	case <-l.done:
		return nil, errors.New(l.res.Error)
	}
}

// body holds the fleet for the presenter until Stop, then restores every
// link and lets the runtime settle before the session is judged.
func (l *Live) body(ctx context.Context, r *run, nodes []string) error {
	l.r = r
	r.onStep = func(i int) {
		l.mu.Lock()
		l.played[i] = true
		l.mu.Unlock()
		l.notify()
	}
	r.log.Info("the fleet is ready for the presenter")
	close(l.ready)
	select {
	case <-l.stop:
	case <-ctx.Done():
	}
	// However it ends, it is ending: no action starts from here.
	l.stopOnce.Do(func() { close(l.stop) })
	l.act.Lock()
	l.mu.Lock()
	if l.playCancel != nil {
		l.playCancel()
	}
	for _, t := range l.timers {
		t.Stop()
	}
	l.mu.Unlock()
	// The timeline's goroutine touches the shaper and the evidence: it is
	// gone before they are.
	l.playing.Wait()
	err := l.restoreAll(context.WithoutCancel(ctx))
	l.act.Unlock()
	if err != nil {
		return err
	}
	r.settle(ctx, nodes)
	return nil
}

// Stop ends the session: links restored, the runtime settled, the session
// judged like a run. It returns the result (its report's scenario).
func (l *Live) Stop() ScenarioResult {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	return l.res
}

// Done is closed when the session has ended.
func (l *Live) Done() <-chan struct{} { return l.done }

// Changed is closed at the next change of what State returns.
func (l *Live) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *Live) notify() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// tap keeps what the dashboard shows from the harness's evidence as it is
// recorded: the sampler's readings, the Nodes' marks.
func (l *Live) tap(e wire.Event) {
	l.mu.Lock()
	s := l.seen[e.Node]
	if s == nil {
		s = &liveSeen{}
		l.seen[e.Node] = s
	}
	switch {
	case e.Component == "sampler" && e.Event == "sample":
		if g, ok := e.Fields["gate"].(string); ok {
			s.gate = g
		}
		if f, ok := e.Fields["failover"].(string); ok {
			s.failover = f
		}
		if d, ok := e.Fields["depth"].(float64); ok {
			n := int64(d)
			s.depth = &n
		}
		rx, okr := e.Fields["rx"].(float64)
		tx, okt := e.Fields["tx"].(float64)
		if okr && okt {
			if dt := e.Time.Sub(s.at).Seconds(); !s.at.IsZero() && dt > 0 {
				s.rxBps, s.txBps = max(0, 8*(rx-s.rx)/dt), max(0, 8*(tx-s.tx)/dt)
			}
			s.rx, s.tx, s.at = rx, tx, e.Time
		}
	case e.Component == "kube" && e.Event == "node":
		m := wire.NodeMark{}
		m.Uplink, _ = e.Fields["uplink"].(string)
		m.Tainted, _ = e.Fields["tainted"].(bool)
		m.Unschedulable, _ = e.Fields["unschedulable"].(bool)
		s.mark = &m
	default:
		l.mu.Unlock()
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// State is what the session shows now.
func (l *Live) State() LiveState {
	r := l.r
	st := LiveState{Scenario: l.sc.Metadata.Name, Description: l.sc.Metadata.Description, Provider: r.f.Provider(), Backend: r.res.Backend,
		TimeScale: r.scale, Started: r.t0, Now: time.Now().UTC()}
	select {
	case <-l.stop:
		st.Ended = true
	default:
	}
	info := r.o.Provider.Info()
	st.Limits = LiveLimits{NodeLinks: info.NodeLinks, Gateways: info.Gateways}
	// The shaper's view of the kernel, not the session's memory of it;
	// once the session ends, every link is being restored and the shaper
	// going away.
	inForce := map[string]impair.Impairment{}
	if !st.Ended {
		r.shMu.Lock()
		for _, m := range l.sc.Spec.Topology.Members() {
			if imp, ok, err := r.sh.Current(m.Name); err == nil && ok {
				inForce[m.Name] = imp
			}
		}
		r.shMu.Unlock()
	}
	for _, m := range l.sc.Spec.Topology.Members() {
		lm := LiveMember{Name: m.Name, Role: m.Role, Site: m.Site, Building: m.Building, Gateway: m.Gateway}
		lm.AsBuilt = true
		if imp, ok := inForce[m.Name]; ok {
			lm.Impairment, lm.Outage = describe(imp), imp.Outage
			// As the run keeps it: a lossy own link is seeded.
			own, _ := r.ownImpairment(m.Name)
			lm.AsBuilt = imp.String() == own.String()
		}
		l.mu.Lock()
		if s := l.seen[m.Name]; s != nil {
			lm.Gate, lm.Failover, lm.Depth, lm.RxBps, lm.TxBps = s.gate, s.failover, s.depth, s.rxBps, s.txBps
			if s.mark != nil {
				lm.Uplink, lm.Tainted, lm.Unschedulable = s.mark.Uplink, s.mark.Tainted, s.mark.Unschedulable
			}
		}
		l.mu.Unlock()
		st.Members = append(st.Members, lm)
	}
	st.Profiles = l.profileNames()
	l.mu.Lock()
	for i, step := range l.sc.Spec.Timeline {
		act := l.sc.Spec.Action(step)
		what := act.What
		if step.For > 0 {
			what += fmt.Sprintf(" for %v", scenarios.Scaled(step.For, r.scale, 0))
		}
		st.Steps = append(st.Steps, LiveStep{Index: i, At: scenarios.Scaled(step.At, r.scale, 0).String(), Group: step.Group, What: what, Note: step.Note, Played: l.played[i]})
	}
	st.Actions = append([]LiveAction(nil), l.actions...)
	st.Playing = l.playCancel != nil
	l.mu.Unlock()
	return st
}

func (l *Live) profileNames() []string {
	var out []string
	for n := range l.sc.Spec.Profiles {
		out = append(out, n)
	}
	for n := range liveProfiles {
		if _, mine := l.sc.Spec.Profiles[n]; !mine {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Shaping is what the presenter asks of one link: a named profile, or a
// rate, delay and loss in the units scenarios use, or an outage.
type Shaping struct {
	Profile string `json:"profile,omitempty"`
	Rate    string `json:"rate,omitempty"`
	Delay   string `json:"delay,omitempty"`
	Loss    string `json:"loss,omitempty"`
	Outage  bool   `json:"outage,omitempty"`
}

// impairment resolves s; errors name the field and what to write.
func (l *Live) impairment(target string, s Shaping) (impair.Impairment, error) {
	switch {
	case s.Outage:
		if s.Profile != "" || s.Rate != "" || s.Delay != "" || s.Loss != "" {
			return impair.Impairment{}, errors.New("an outage takes nothing else: cut the link, or shape it")
		}
		return impair.Impairment{Outage: true}, nil
	case s.Profile != "":
		if s.Rate != "" || s.Delay != "" || s.Loss != "" {
			return impair.Impairment{}, errors.New("a profile takes nothing else: pick one, or give rate, delay and loss")
		}
		p, ok := l.sc.Spec.Profiles[s.Profile]
		if !ok {
			if p, ok = liveProfiles[s.Profile]; !ok {
				return impair.Impairment{}, fmt.Errorf("no profile %q: use one of %v", s.Profile, l.profileNames())
			}
		}
		return p.Impairment(s.Profile)
	case s.Rate == "" && s.Delay == "" && s.Loss == "":
		return impair.Impairment{}, errors.New("nothing to apply: give a profile, a rate, a delay, a loss or an outage")
	}
	return scenarios.LinkProfile{Rate: scenarios.SameRate(s.Rate), Delay: s.Delay, Loss: s.Loss}.Impairment(target)
}

// member checks that target is a link the presenter may shape.
func (l *Live) member(target string) (scenarios.Member, error) {
	for _, m := range l.sc.Spec.Topology.Members() {
		if m.Name != target {
			continue
		}
		info := l.r.o.Provider.Info()
		if m.Role == clusters.RoleNode && !info.NodeLinks {
			return m, InputError{fmt.Errorf("provider %s cannot impair node %s's own link: impair its gateway %s", info.Name, m.Name, m.Gateway)}
		}
		return m, nil
	}
	var names []string
	for _, m := range l.sc.Spec.Topology.Members() {
		names = append(names, m.Name)
	}
	return scenarios.Member{}, InputError{fmt.Errorf("no gateway or node %q in the fleet: use one of %v", target, names)}
}

// do runs one action of the presenter's, recorded (as evidence and in
// the session's list).
func (l *Live) do(what, target string, fn func(ctx context.Context) error) error {
	select {
	case <-l.stop:
		return ErrSessionEnding
	default:
	}
	start := time.Now()
	l.act.Lock()
	select {
	case <-l.stop:
		// Stop came while this waited: the links are being restored.
		l.act.Unlock()
		return ErrSessionEnding
	default:
	}
	l.r.shMu.Lock()
	err := fn(context.Background())
	l.r.shMu.Unlock()
	l.act.Unlock()
	a := LiveAction{Time: start.UTC(), What: what, Target: target, Took: time.Since(start).Round(time.Millisecond).String()}
	kv := []any{"what", what}
	if err != nil {
		a.Err = err.Error()
		kv = append(kv, "err", err.Error())
	}
	node := target
	if node == "" {
		node = clusters.CloudName
	}
	l.r.ev.emit(node, "dashboard", "action", kv...)
	l.mu.Lock()
	l.actions = append(l.actions, a)
	if len(l.actions) > 50 {
		l.actions = l.actions[len(l.actions)-50:]
	}
	l.mu.Unlock()
	l.notify()
	return err
}

// Shape applies s to target's link, replacing what was there.
func (l *Live) Shape(target string, s Shaping) error {
	if _, err := l.member(target); err != nil {
		return err
	}
	imp, err := l.impairment(target, s)
	if err != nil {
		return InputError{err}
	}
	return l.do(describe(imp), target, func(ctx context.Context) error {
		l.r.stopTrace(target)
		if err := l.r.sh.Apply(ctx, target, imp); err != nil {
			return err
		}
		l.r.startWindow(target, "dashboard", -1, imp)
		l.r.ev.emit(target, "timeline", "impair", "what", imp.String(), "note", "dashboard")
		return nil
	})
}

// Restore returns target's link to the topology's own.
func (l *Live) Restore(target string) error {
	if _, err := l.member(target); err != nil {
		return err
	}
	return l.do("restore", target, func(ctx context.Context) error { return l.r.restore(ctx, target) })
}

// Step plays timeline step i now (its for, scaled, restores it after).
func (l *Live) Step(i int) error {
	if i < 0 || i >= len(l.sc.Spec.Timeline) {
		return InputError{fmt.Errorf("no step %d: the timeline has steps 0 to %d", i, len(l.sc.Spec.Timeline)-1)}
	}
	st := l.sc.Spec.Timeline[i]
	err := l.do(fmt.Sprintf("step %d: %s", i, l.sc.Spec.Action(st).What), st.Group, func(ctx context.Context) error {
		return l.r.do(ctx, action{step: st, idx: i})
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.played[i] = true
	l.mu.Unlock()
	if st.For > 0 {
		t := time.AfterFunc(scenarios.Scaled(st.For, l.r.scale, 0), func() {
			_ = l.do(fmt.Sprintf("step %d: restore", i), st.Group, func(ctx context.Context) error {
				return l.r.do(ctx, action{step: st, idx: i, undo: true})
			})
		})
		l.mu.Lock()
		l.timers = append(l.timers, t)
		l.mu.Unlock()
	}
	return nil
}

// Play plays the whole timeline from now at its time scale, in the
// background; Reset or Stop ends it.
func (l *Live) Play() error {
	return l.do("play the timeline", "", func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.playCancel != nil {
			return ErrPlaying
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.playCancel = cancel
		l.playing.Add(1)
		go func() {
			defer l.playing.Done()
			if err := l.r.timelineFrom(ctx, time.Now()); err != nil && !errors.Is(err, context.Canceled) {
				l.r.log.Error("playing the timeline", "err", err)
			}
			cancel()
			l.mu.Lock()
			// Only its own: a Reset and a new Play may have come since.
			if l.playGen(ctx) {
				l.playCancel, l.playCtx = nil, nil
			}
			l.mu.Unlock()
			l.notify()
		}()
		l.playCtx = ctx
		return nil
	})
}

// playGen says ctx is the current Play's (l.mu held).
func (l *Live) playGen(ctx context.Context) bool { return l.playCtx == ctx }

// Reset stops a timeline being played and restores every link.
func (l *Live) Reset() error {
	return l.do("reset", "", func(ctx context.Context) error {
		l.mu.Lock()
		if l.playCancel != nil {
			l.playCancel()
			l.playCancel, l.playCtx = nil, nil
		}
		for _, t := range l.timers {
			t.Stop()
		}
		l.timers = nil
		clear(l.played)
		l.mu.Unlock()
		return l.restoreAllLocked(ctx)
	})
}

// restoreAll restores what is impaired (act held, not shMu).
func (l *Live) restoreAll(ctx context.Context) error {
	l.r.shMu.Lock()
	defer l.r.shMu.Unlock()
	return l.restoreAllLocked(ctx)
}

func (l *Live) restoreAllLocked(ctx context.Context) error {
	if err := l.r.endFaultsLocked(ctx); err != nil {
		return err
	}
	l.r.mu.Lock()
	var targets []string
	for t := range l.r.active {
		targets = append(targets, t)
	}
	l.r.mu.Unlock()
	slices.Sort(targets)
	var errs []error
	for _, t := range targets {
		errs = append(errs, l.r.restore(ctx, t))
	}
	return errors.Join(errs...)
}

// LiveFleet is the scenario a live session runs when none is given: the
// built-in fleet (a store, a truck, a factory with two buildings), the
// runtime with its gate and, where the provider can, failover, a fetching
// and a producing workload on every node, and no timeline: the presenter
// is the timeline.
func LiveFleet(info clusters.Info) (*scenarios.Scenario, error) {
	sc := scenarios.Scenario{APIVersion: scenarios.APIVersion, Kind: "Scenario",
		Metadata: scenarios.Metadata{Name: "live", Description: "the built-in fleet, for a presenter"}}
	sc.Spec.Topology = scenarios.Default().Spec
	sc.Spec.Runtime.Gate = scenarios.GateSpec{MinDownload: "2mbit", MaxLatency: scenarios.Duration(500 * time.Millisecond)}
	failover := info.Gateways && info.GatewayRuntime && info.ControlPlanes
	if failover {
		sc.Spec.Runtime.Failover = scenarios.FailoverSpec{Enabled: true, Actions: []string{"label", "taint"}}
	} else {
		// Buildings need failover's gateways; without it, sites alone.
		var sites []scenarios.Site
		for _, s := range sc.Spec.Topology.Sites {
			if len(s.Buildings) == 0 {
				sites = append(sites, s)
			}
		}
		sc.Spec.Topology.Sites = sites
	}
	sc.Spec.Workloads = []scenarios.Workload{
		{Name: "maps", Type: scenarios.WorkloadFetch, On: "all", Period: scenarios.Duration(5 * time.Second)},
		{Name: "telemetry", Type: scenarios.WorkloadProduce, On: "all", Period: scenarios.Duration(time.Second), Stream: "telemetry"},
	}
	sc.Spec.Duration = scenarios.Duration(time.Hour)
	sc.Spec.Expect = []scenarios.Expectation{{Validator: "gate-follows-link", Group: "all"}, {Validator: "keeps-running"}}
	if failover {
		sc.Spec.Expect = append(sc.Spec.Expect, scenarios.Expectation{Validator: "routes-switched", Group: "factory"})
	}
	b, err := yaml.Marshal(&sc)
	if err != nil {
		return nil, err
	}
	return scenarios.ParseScenario("built-in", b)
}
