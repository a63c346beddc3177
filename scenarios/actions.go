package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/shaper/trace"
)

// Action is what a timeline step does, as the harness plays it: put an
// impairment on the members' links, restore their own, or stop a process
// on them (which the harness's supervisor starts again).
type Action struct {
	// Kind is the step's field: profile, link, trace, outage, restore,
	// kill, restart, diskFull, newAddress, powerLoss or dns.
	Kind string
	// Impairs: the step puts Impairment on each member's link (and For
	// may restore it).
	Impairs    bool
	Impairment impair.Impairment
	// Process (kill, restart) is "runtime", "workload" or
	// "workload/NAME"; Graceful stops it with SIGTERM, not SIGKILL.
	Process  string
	Graceful bool
	// Trace (trace) is played on each member's link from the step's
	// time, each row an impairment; TraceName names it.
	Trace     *trace.Trace
	TraceName string
	// Disk (diskFull) fills each member's disk; its restore frees it.
	Disk bool
	// Readdress (newAddress) gives each member's uplink a new address.
	Readdress bool
	// Power (powerLoss) cuts each member's power; its restore (or the
	// step itself, without For) boots it.
	Power bool
	// DNS (dns) makes the cloud's name fail or resolve late for each
	// member's (gateway's) site; its restore answers again.
	DNS *DNSFault
	// What says it in words, for logs and evidence.
	What string
}

// stepAction is one kind of timeline step. Adding a kind is a field of
// Step (the format) and an entry in stepActions: the loader checks it and
// the harness plays it from its Action.
type stepAction struct {
	kind string
	// set says whether the step is of this kind.
	set func(Step) bool
	// check validates the step (path is its place in the file).
	check func(sp *ScenarioSpec, path string, st Step, workloads map[string]bool) error
	// action is the step as the harness plays it.
	action func(sp *ScenarioSpec, st Step) Action
}

var stepActions = []stepAction{
	{
		kind: "profile",
		set:  func(st Step) bool { return st.Profile != "" },
		check: func(sp *ScenarioSpec, path string, st Step, _ map[string]bool) error {
			if _, ok := sp.Profiles[st.Profile]; !ok {
				return perr(path+".profile", "no profile %q in spec.profiles", st.Profile)
			}
			return nil
		},
		action: func(sp *ScenarioSpec, st Step) Action {
			imp, _ := sp.Profiles[st.Profile].Impairment(st.Profile)
			return Action{Impairs: true, Impairment: imp, What: st.Profile + " (" + imp.String() + ")"}
		},
	},
	{
		kind: "link",
		set:  func(st Step) bool { return st.Link != nil },
		check: func(_ *ScenarioSpec, path string, st Step, _ map[string]bool) error {
			_, err := st.Link.Impairment(path + ".link")
			return err
		},
		action: func(_ *ScenarioSpec, st Step) Action {
			imp, _ := st.Link.Impairment("link")
			return Action{Impairs: true, Impairment: imp, What: imp.String()}
		},
	},
	{
		kind: "outage",
		set:  func(st Step) bool { return st.Outage },
		action: func(*ScenarioSpec, Step) Action {
			return Action{Impairs: true, Impairment: impair.Impairment{Outage: true}, What: "outage"}
		},
	},
	{
		kind: "trace",
		set:  func(st Step) bool { return st.Trace != "" },
		check: func(sp *ScenarioSpec, path string, st Step, _ map[string]bool) error {
			if _, ok := sp.traces[st.Trace]; !ok {
				return perr(path+".trace", "no trace %q: name one of spec.traces or a built-in (%s)", st.Trace, strings.Join(BuiltinTraces(), ", "))
			}
			return nil
		},
		action: func(sp *ScenarioSpec, st Step) Action {
			t := sp.traces[st.Trace]
			how := "once"
			if st.For > 0 {
				how = "looping"
			}
			return Action{Impairs: true, Impairment: t.Rows[0].Impairment, Trace: &t, TraceName: st.Trace,
				What: fmt.Sprintf("trace %s (%d rows over %v, %s)", st.Trace, len(t.Rows), t.Duration(), how)}
		},
	},
	{
		kind:   "diskFull",
		set:    func(st Step) bool { return st.DiskFull },
		check:  onlyRole("node", "diskFull on %s: only nodes keep a buffer on a disk of their own; name nodes"),
		action: func(*ScenarioSpec, Step) Action { return Action{Disk: true, What: "disk full"} },
	},
	{
		kind: "newAddress",
		set:  func(st Step) bool { return st.NewAddress },
		check: func(sp *ScenarioSpec, path string, st Step, w map[string]bool) error {
			if err := noFor("newAddress")(sp, path, st, w); err != nil {
				return err
			}
			return onlyRole("gateway", "newAddress on %s: an uplink's address is its gateway's; name gateways")(sp, path, st, w)
		},
		action: func(*ScenarioSpec, Step) Action { return Action{Readdress: true, What: "new uplink address"} },
	},
	{
		kind:   "powerLoss",
		set:    func(st Step) bool { return st.PowerLoss },
		check:  onlyRole("node", "powerLoss on %s: only nodes have a power supply and a disk of their own here; name nodes"),
		action: func(*ScenarioSpec, Step) Action { return Action{Power: true, What: "power loss"} },
	},
	{
		kind: "dns",
		set:  func(st Step) bool { return st.DNS != nil },
		check: func(sp *ScenarioSpec, path string, st Step, w map[string]bool) error {
			d := st.DNS
			switch {
			case d.Fail && d.Delay != 0:
				return perr(path+".dns", "dns: give fail: true or a delay, not both")
			case !d.Fail && d.Delay == 0:
				return perr(path+".dns", "dns: give fail: true (every lookup fails) or a delay (e.g. delay: 5s)")
			case d.Delay != 0 && (d.Delay.D() < 10*time.Millisecond || d.Delay.D() > 5*time.Minute):
				return perr(path+".dns.delay", "dns delay %v is out of range: 10ms to 5m", d.Delay.D())
			}
			return onlyRole("gateway", "dns on %s: a site's lookups leave through its gateway, which the name server sees them from; name gateways")(sp, path, st, w)
		},
		action: func(_ *ScenarioSpec, st Step) Action {
			d := *st.DNS
			return Action{DNS: &d, What: d.String()}
		},
	},
	{
		kind:   "restore",
		set:    func(st Step) bool { return st.Restore },
		check:  noFor("restore"),
		action: func(*ScenarioSpec, Step) Action { return Action{What: "restore"} },
	},
	{
		kind:   "kill",
		set:    func(st Step) bool { return st.Kill != "" },
		check:  checkProcess("kill", func(st Step) string { return st.Kill }),
		action: func(_ *ScenarioSpec, st Step) Action { return Action{Process: st.Kill, What: "kill " + st.Kill} },
	},
	{
		kind:  "restart",
		set:   func(st Step) bool { return st.Restart != "" },
		check: checkProcess("restart", func(st Step) string { return st.Restart }),
		action: func(_ *ScenarioSpec, st Step) Action {
			return Action{Process: st.Restart, Graceful: true, What: "restart " + st.Restart}
		},
	},
}

func noFor(kind string) func(*ScenarioSpec, string, Step, map[string]bool) error {
	return func(_ *ScenarioSpec, path string, st Step, _ map[string]bool) error {
		if st.For != 0 {
			return perr(path+".for", "for applies to impairments (profile, link, trace, outage), diskFull, powerLoss and dns, not to %s", kind)
		}
		return nil
	}
}

// onlyRole checks that a step names members of role only; why says what
// is wrong with one that is not (%s: its name).
func onlyRole(role, why string) func(*ScenarioSpec, string, Step, map[string]bool) error {
	return func(sp *ScenarioSpec, path string, st Step, _ map[string]bool) error {
		ms, _ := sp.StepMembers(st)
		for _, m := range ms {
			if m.Role != role {
				return perr(path+".group", why, m.Name)
			}
		}
		return nil
	}
}

// checkProcess checks a step that stops a process: it names one the
// scenario runs on every member of the group, or the run would break
// half-way.
func checkProcess(field string, what func(Step) string) func(*ScenarioSpec, string, Step, map[string]bool) error {
	return func(sp *ScenarioSpec, path string, st Step, workloads map[string]bool) error {
		if err := noFor(field)(sp, path, st, workloads); err != nil {
			return err
		}
		w := what(st)
		name, ok := strings.CutPrefix(w, "workload/")
		switch {
		case w == "runtime" || w == "workload":
		case ok && workloads[name]:
		default:
			return perr(path+"."+field, "%s %q: use runtime, workload, or workload/NAME with a workload of spec.workloads", field, w)
		}
		ms, _ := sp.StepMembers(st)
		for _, m := range ms {
			if m.Role == Cloud {
				if w == "runtime" || !sp.runs(Cloud, name) {
					return perr(path+"."+field, "%s %q on the cloud: name a cloud workload (workload/NAME, or workload for all of them)", field, w)
				}
				continue
			}
			if w == "runtime" {
				if m.Role == "gateway" && !sp.Runtime.Failover.Enabled {
					return perr(path+".group", "%s %s: gateway %s runs no runtime unless failover is enabled", field, w, m.Name)
				}
				continue
			}
			if m.Role != "node" || !sp.runs(m.Name, name) {
				return perr(path+".group", "%s %s: %s runs no such workload (workloads run on nodes, as their on: groups say)", field, w, m.Name)
			}
		}
		return nil
	}
}

// kindOf finds the step's one kind; the error says what it has.
func kindOf(st Step) (*stepAction, error) {
	var found []*stepAction
	var kinds []string
	for i := range stepActions {
		kinds = append(kinds, stepActions[i].kind)
		if stepActions[i].set(st) {
			found = append(found, &stepActions[i])
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("a step does exactly one thing: %s (this one has %d)", strings.Join(kinds, ", "), len(found))
	}
	return found[0], nil
}

// Action is what the step does, as the harness plays it. The step must
// have passed the loader's checks (it has exactly one kind).
func (sp *ScenarioSpec) Action(st Step) Action {
	k, err := kindOf(st)
	if err != nil {
		return Action{What: err.Error()}
	}
	a := k.action(sp, st)
	a.Kind = k.kind
	return a
}
