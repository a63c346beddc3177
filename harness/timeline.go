package harness

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/validators"
	"golang.org/x/sync/errgroup"
)

// action is one thing the timeline does at a scaled time.
type action struct {
	at   time.Duration
	step scenarios.Step
	idx  int  // the step's index in the timeline
	undo bool // the automatic restore of a step with For
}

// timeline plays the steps, with their automatic restores, in time order,
// logging progress, and then waits out the scenario's duration.
func (r *run) timeline(ctx context.Context) error { return r.timelineFrom(ctx, r.t0) }

// timelineFrom plays the timeline with t0 as its time zero.
func (r *run) timelineFrom(ctx context.Context, t0 time.Time) error {
	defer r.stopTraces()
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
		if d := time.Until(t0.Add(a.at)); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		if a.at == total && a.step.Group == "" {
			break
		}
		r.shMu.Lock()
		// A live session may have reset or ended while this waited.
		if ctx.Err() != nil {
			r.shMu.Unlock()
			return ctx.Err()
		}
		err := r.do(ctx, a)
		r.shMu.Unlock()
		if err != nil {
			return fmt.Errorf("timeline step at %v (%s): %w", a.step.At.D(), a.step.Group, err)
		}
		r.mu.Lock()
		terr := r.traceErr
		r.mu.Unlock()
		if terr != nil {
			return terr
		}
		if r.onStep != nil && !a.undo {
			r.onStep(a.idx)
		}
	}
	// What is still impaired (or full) when the timeline ends is
	// restored: the settle and the validators judge recovery from a known
	// point.
	r.mu.Lock()
	terr := r.traceErr
	r.mu.Unlock()
	if terr != nil {
		return terr
	}
	if err := r.endFaults(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	var still []string
	for t := range r.active {
		still = append(still, t)
	}
	r.mu.Unlock()
	sort.Strings(still)
	if len(still) > 0 {
		r.log.Info("restoring what is still impaired at the end of the timeline", "targets", still)
		r.shMu.Lock()
		if ctx.Err() != nil {
			r.shMu.Unlock()
			return ctx.Err()
		}
		err := eachAtOnce(ctx, still, r.restore)
		r.shMu.Unlock()
		if err != nil {
			return err
		}
	}
	r.log.Info("timeline done", "elapsed", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// logStep logs a step as it is played, at its time in the timeline.
func (r *run) logStep(st scenarios.Step, what string) {
	r.log.Info(fmt.Sprintf("t+%.1fs/%.0fs %s: %s", time.Since(r.t0).Seconds(), r.res.Timeline.Seconds(), st.Group, what), "note", st.Note)
}

// faulted lists, sorted, the keys of a run's map of faults in force.
func faulted[V any](r *run, m map[string]V) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// endFaults boots what is off, frees what is full and makes DNS answer
// again, as one change (a live session's reset does the same).
func (r *run) endFaults(ctx context.Context) error {
	r.shMu.Lock()
	defer r.shMu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return r.endFaultsLocked(ctx)
}

// endFaultsLocked is endFaults with shMu held.
func (r *run) endFaultsLocked(ctx context.Context) error {
	if err := r.bootAll(ctx); err != nil {
		return err
	}
	if err := r.freeDisks(ctx); err != nil {
		return err
	}
	return r.restoreDNS(ctx)
}

// restore returns target's link to the topology's own profile (a store's
// DSL line stays a DSL line), or unshaped if it had none, and ends its
// window at the moment the restore began.
func (r *run) restore(ctx context.Context, target string) error {
	r.stopTrace(target)
	at := time.Now()
	var err error
	if own, ok := r.ownImpairment(target); ok {
		err = r.sh.Apply(ctx, target, own)
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

// cutKeepsOwn makes an outage of a link that has a profile of its own
// that profile, cut: nothing passes all the same, but its delayers stay
// up, so the restore only lifts the cut. Sixty routers restored at once
// otherwise restart sixty delayers on a loaded machine (about 20 s, eight
// at a time), and the region does not come back within the same moment.
func (r *run) cutKeepsOwn(target string, imp impair.Impairment) impair.Impairment {
	if !imp.Outage || imp.Direction != "" && imp.Direction != impair.Both {
		return imp
	}
	own, ok := r.ownImpairment(target)
	if !ok {
		return imp
	}
	own.Outage = true
	return own
}

// ownImpairment is target's own link profile as the run keeps it (seeded),
// and whether it has one.
func (r *run) ownImpairment(target string) (impair.Impairment, bool) {
	for _, m := range r.sc.Spec.Topology.Members() {
		if m.Name == target && m.Link != nil {
			imp, err := m.Link.Impairment(target)
			return r.seeded(target, imp), err == nil
		}
	}
	return impair.Impairment{}, false
}

// seedOwnLinks re-applies, seeded, the topology's own profiles that draw
// at random (loss or jitter): the provider built them unseeded.
func (r *run) seedOwnLinks(ctx context.Context) error {
	for _, m := range r.sc.Spec.Topology.Members() {
		own, ok := r.ownImpairment(m.Name)
		if !ok || own.Seed == 0 { // nothing drawn at random
			continue
		}
		if err := r.sh.Apply(ctx, m.Name, own); err != nil {
			return fmt.Errorf("seed %s's own link: %w", m.Name, err)
		}
	}
	return nil
}

func (r *run) do(ctx context.Context, a action) error {
	st := a.step
	ms, err := r.sc.Spec.StepMembers(st)
	if err != nil {
		return err
	}
	act := r.sc.Spec.Action(st)
	if act.Disk {
		return r.diskStep(ctx, a, ms)
	}
	if act.Readdress {
		return r.readdress(ctx, a, ms)
	}
	if act.Power {
		return r.powerStep(ctx, a, ms)
	}
	if act.DNS != nil {
		return r.dnsStep(ctx, a, ms, *act.DNS)
	}
	if a.undo {
		act = scenarios.Action{Kind: "restore", What: "restore"}
	}
	what, imp := act.What, act.Impairment
	if st.For > 0 && !a.undo {
		what += fmt.Sprintf(" for %v", scenarios.Scaled(st.For, r.scale, 0))
	}
	r.logStep(st, what)
	if act.Process != "" {
		for _, m := range ms {
			if err := r.sup.kill(m.Name, act.Process, act.Graceful); err != nil {
				return err
			}
			r.ev.emit(m.Name, "timeline", act.Kind, "process", act.Process, "note", st.Note)
		}
		return nil
	}
	if !act.Impairs && act.Kind != "restore" {
		return fmt.Errorf("the harness cannot play a %s step", act.Kind)
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	outer := ctx // a trace plays on after this step's changes are made
	return eachAtOnce(ctx, names, func(ctx context.Context, name string) error {
		// Whatever this step does to the link ends a trace playing there.
		r.stopTrace(name)
		if act.Trace != nil && !a.undo {
			return r.playTrace(outer, ctx, name, st, a.idx, act)
		}
		if act.Impairs {
			imp := r.seeded(name, r.cutKeepsOwn(name, imp))
			if err := r.sh.Apply(ctx, name, imp); err != nil {
				return err
			}
			r.startWindow(name, st.Group, a.idx, imp)
			r.ev.emit(name, "timeline", "impair", "what", imp.String(), "note", st.Note)
			return nil
		}
		// A step's own "for" restores only its own impairment: a later
		// step on the same target has replaced it.
		if a.undo && r.activeStep(name) != a.idx {
			r.log.Info("not restoring: a later step changed the link since", "target", name)
			return nil
		}
		return r.restore(ctx, name)
	})
}

// eachAtOnce changes the links of targets together, eight at a time: a
// step on a region (sixty routers) changes them as the region's ISP does,
// not one after another over a minute.
func eachAtOnce(ctx context.Context, targets []string, change func(context.Context, string) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, t := range targets {
		g.Go(func() error { return change(gctx, t) })
	}
	return g.Wait()
}

func (r *run) startWindow(target, group string, step int, imp impair.Impairment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, step)
	now := time.Now()
	if i, ok := r.active[target]; ok {
		r.wins[i].End = now
	}
	r.wins = append(r.wins, validators.Window{Target: target, Start: now, Outage: imp.Outage, RateBps: float64(imp.RateOf(impair.Ingress)), Delay: imp.Delay, Loss: imp.Loss, What: describe(imp)})
	r.active[target] = len(r.wins) - 1
	r.groups = append(r.groups, group)
}

// seeded gives imp the run's seed for target's link (when it has loss or
// jitter to draw): each link its own pattern, the same each time the run
// is replayed with that seed.
func (r *run) seeded(target string, imp impair.Impairment) impair.Impairment {
	if imp.Loss == 0 && imp.Jitter == 0 {
		return imp
	}
	h := fnv.New64a()
	h.Write([]byte(target))
	imp.Seed = (r.res.Seed ^ h.Sum64()) | 1 // never 0: that is unseeded
	return imp
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
