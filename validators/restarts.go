package validators

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/scenarios"
)

// NoRestartLoops: no process the harness supervises (the runtime and the
// workloads, as a kubelet would) exited unplanned more than max times
// (default 0), and every planned kill of the timeline was followed by a
// restart that stayed up.
type NoRestartLoops struct{}

// Validate implements Validator.
func (NoRestartLoops) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	limit := 0
	if x.Max != nil {
		limit = *x.Max
	}
	type proc struct{ node, name string }
	unplanned, planned, starts := map[proc]int{}, map[proc]int{}, map[proc]int{}
	var order []proc
	for _, e := range ev.events("", "supervisor", time.Time{}, ev.End, "exited", "started", "start-failed") {
		if e.Event == "start-failed" {
			v.fail("%s %s could not be started again: %v", e.Node, e.Fields["process"], e.Fields["err"])
			v.quote(e)
			continue
		}
		p := proc{e.Node, fmt.Sprint(e.Fields["process"])}
		if starts[p] == 0 && e.Event == "started" {
			order = append(order, p)
		}
		switch {
		case e.Event == "started":
			starts[p]++
		case e.Fields["planned"] == true:
			planned[p]++
		default:
			unplanned[p]++
			if unplanned[p] <= 2 {
				v.quote(e)
				v.mark(e.Node, e.Time, e.Node+" "+p.name+" exited", false)
			}
		}
	}
	if len(order) == 0 {
		v.fail("no supervised process started")
	}
	total := 0
	for _, p := range order {
		total += unplanned[p]
		if unplanned[p] > limit {
			v.fail("%s %s exited %d times unplanned (max %d); see its log", p.node, p.name, unplanned[p], limit)
		}
		if planned[p] > 0 && starts[p] < planned[p]+1 {
			v.fail("%s %s was killed %d times by the timeline and restarted only %d times", p.node, p.name, planned[p], starts[p]-1)
		}
	}
	v.Numbers["processes"] = float64(len(order))
	v.Numbers["unplannedExits"] = float64(total)
	if v.fails == 0 {
		kills := 0
		for _, n := range planned {
			kills += n
		}
		v.ok("%d processes, %d unplanned exits, %d planned kills each restarted", len(order), total, kills)
	}
	return v.done()
}
