package harness

import (
	"context"
	"fmt"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// diskSize is the disk a node gets when the timeline fills it: room for
// hours of a sample workload's buffer, and little for a machine to hold.
const diskSize = 64 << 20

// limitDisks gives every node a diskFull or powerLoss step names a disk
// of its own, before its runtime opens its buffer there.
func (r *run) limitDisks(ctx context.Context) error {
	seen := map[string]bool{}
	for _, st := range r.sc.Spec.Timeline {
		if !st.DiskFull && !st.PowerLoss {
			continue
		}
		d, ok := r.f.(clusters.Disks)
		if !ok {
			return fmt.Errorf("the timeline fills a node's disk or cuts its power, but provider %s cannot give a node a disk of its own (netns can)", r.f.Provider())
		}
		ms, err := r.sc.Spec.StepMembers(st)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if seen[m.Name] {
				continue
			}
			seen[m.Name] = true
			if err := d.LimitDisk(ctx, m.Name, diskSize); err != nil {
				return err
			}
			r.log.Info("a disk of its own (ext4 on a loop device) for the timeline to fill or cut the power of", "node", m.Name, "size", fmt.Sprintf("%d MiB", diskSize>>20))
		}
	}
	return nil
}

// diskStep fills the members' disks, or (the step's own restore) frees
// them, as evidence on each node's timeline.
func (r *run) diskStep(ctx context.Context, a action, ms []scenarios.Member) error {
	d, ok := r.f.(clusters.Disks)
	if !ok {
		return fmt.Errorf("provider %s cannot fill a node's disk", r.f.Provider())
	}
	full := !a.undo
	what := "disk full"
	if !full {
		what = "disk freed"
	}
	r.logStep(a.step, what)
	for _, m := range ms {
		if r.sup.powered(m.Name) != nil {
			return fmt.Errorf("%s's disk cannot be filled or freed while its power is off: move the diskFull step (or its for) out of the powerLoss step's time", m.Name)
		}
		if err := d.FillDisk(ctx, m.Name, full); err != nil {
			return err
		}
		r.mu.Lock()
		if full {
			r.full[m.Name] = true
		} else {
			delete(r.full, m.Name)
		}
		r.mu.Unlock()
		if full {
			r.ev.emit(m.Name, "timeline", "disk-full", "note", a.step.Note)
		} else {
			r.ev.emit(m.Name, "timeline", "disk-freed")
		}
	}
	return nil
}

// freeDisks frees what is still full when the timeline ends.
func (r *run) freeDisks(ctx context.Context) error {
	full := faulted(r, r.full)
	if len(full) == 0 {
		return nil
	}
	r.log.Info("freeing what is still full at the end of the timeline", "nodes", full)
	ms := make([]scenarios.Member, len(full))
	for i, n := range full {
		ms[i] = scenarios.Member{Name: n}
	}
	return r.diskStep(ctx, action{undo: true}, ms)
}
