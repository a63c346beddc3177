package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// powerStep cuts the members' power (every process on them dies at once,
// their disks lose what was not yet written), or, as the step's own
// restore, boots them; a step without For boots them at once. Which nodes
// are off is the supervisor's to know (it holds their processes).
func (r *run) powerStep(ctx context.Context, a action, ms []scenarios.Member) error {
	d, ok := r.f.(clusters.Disks)
	if !ok {
		return fmt.Errorf("provider %s cannot cut a node's power", r.f.Provider())
	}
	nodes := make([]string, len(ms))
	for i, m := range ms {
		nodes[i] = m.Name
	}
	if a.undo {
		return r.boot(ctx, d, nodes)
	}
	r.logStep(a.step, "power loss")
	for _, n := range nodes {
		start := time.Now()
		// A cut that did not happen leaves the node on; whatever goes
		// wrong after the cut leaves it off, for the end of the timeline
		// (or a reset) to boot.
		if err := r.sup.powerOff(ctx, n, func() error { return d.CutPower(ctx, n) }); err != nil {
			return err
		}
		r.killAppsOn(n)
		r.ev.emit(n, "timeline", "power-off", "note", a.step.Note, "ms", time.Since(start).Milliseconds())
	}
	if a.step.For == 0 {
		return r.boot(ctx, d, nodes)
	}
	return nil
}

// boot mounts the nodes' disks again (their journals replayed) and lets
// the supervisor start their processes; a node that has power is left
// alone. Boots run under shMu (a step, the end of the timeline, a live
// reset), so no disk is booted twice at once.
func (r *run) boot(ctx context.Context, d clusters.Disks, nodes []string) error {
	for _, n := range nodes {
		if r.sup.powered(n) == nil {
			continue
		}
		if err := d.Boot(ctx, n); err != nil {
			return err // still off: a later boot tries again
		}
		r.sup.powerOn(n)
		r.log.Info("power back: the node boots", "node", n)
		r.ev.emit(n, "timeline", "power-on")
	}
	return nil
}

// bootAll boots what is still off when the timeline ends.
func (r *run) bootAll(ctx context.Context) error {
	off := r.sup.offNodes()
	if len(off) == 0 {
		return nil
	}
	d, ok := r.f.(clusters.Disks)
	if !ok {
		return nil
	}
	r.log.Info("booting what is still off at the end of the timeline", "nodes", off)
	return r.boot(ctx, d, off)
}
