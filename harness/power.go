package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// powerStep cuts the members' power (every process on them dies at once,
// their disks lose what was not yet written), or, as the step's own
// restore, boots them; a step without For boots them at once.
func (r *run) powerStep(ctx context.Context, a action, ms []scenarios.Member) error {
	d, ok := r.f.(clusters.Disks)
	if !ok {
		return fmt.Errorf("provider %s cannot cut a node's power", r.f.Provider())
	}
	if a.undo {
		return r.boot(ctx, d, ms)
	}
	r.logStep(a.step, "power loss")
	for _, m := range ms {
		start := time.Now()
		// Off from here: whatever goes wrong after the cut, the end of the
		// timeline (or a reset) boots it.
		r.mu.Lock()
		r.off[m.Name] = true
		r.mu.Unlock()
		if err := r.sup.powerOff(ctx, m.Name, func() error { return d.CutPower(ctx, m.Name) }); err != nil {
			if errors.Is(err, errNotCut) {
				r.mu.Lock()
				delete(r.off, m.Name)
				r.mu.Unlock()
			}
			return err
		}
		r.killAppsOn(m.Name)
		r.ev.emit(m.Name, "timeline", "power-off", "note", a.step.Note, "ms", time.Since(start).Milliseconds())
	}
	if a.step.For == 0 {
		return r.boot(ctx, d, ms)
	}
	return nil
}

// boot mounts the members' disks again (their journals replayed) and
// lets the supervisor start their processes.
func (r *run) boot(ctx context.Context, d clusters.Disks, ms []scenarios.Member) error {
	for _, m := range ms {
		// Claimed before the boot, so two boots (the step's own and the
		// end of the timeline's) never mount one disk twice.
		r.mu.Lock()
		off := r.off[m.Name]
		delete(r.off, m.Name)
		r.mu.Unlock()
		if !off {
			continue
		}
		if err := d.Boot(ctx, m.Name); err != nil {
			r.mu.Lock()
			r.off[m.Name] = true // still off: a later boot tries again
			r.mu.Unlock()
			return err
		}
		r.sup.powerOn(m.Name)
		r.log.Info("power back: the node boots", "node", m.Name)
		r.ev.emit(m.Name, "timeline", "power-on")
	}
	return nil
}

// bootAll boots what is still off when the timeline ends.
func (r *run) bootAll(ctx context.Context) error {
	off := faulted(r, r.off)
	if len(off) == 0 {
		return nil
	}
	d, ok := r.f.(clusters.Disks)
	if !ok {
		return nil
	}
	ms := make([]scenarios.Member, len(off))
	for i, n := range off {
		ms[i] = scenarios.Member{Name: n}
	}
	r.log.Info("booting what is still off at the end of the timeline", "nodes", off)
	return r.boot(ctx, d, ms)
}
