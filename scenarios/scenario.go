package scenarios

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgefault/edgefault/shaper/trace"
	"github.com/edgefault/edgefault/units"
	"gopkg.in/yaml.v3"
)

// Scenario is a whole test of an edge fleet (kind: Scenario): the
// topology, the runtime's settings, the workloads, a timeline of
// impairments and faults, and the expectations the run is judged by.
type Scenario struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   Metadata     `yaml:"metadata"`
	Spec       ScenarioSpec `yaml:"spec"`
	// Source is the file the scenario was read from, or "built-in".
	Source string `yaml:"-"`
	// root is the parsed document, for Errorf's line numbers.
	root *yaml.Node
}

// reservedWorkloadNames name the runtime's and the harness's own evidence
// files on a member.
var reservedWorkloadNames = []string{"runtime", "gate", "sampler", "timeline", "kube", "customer", "supervisor", "speedserver", "content", "sink"}

// ReservedPorts are the TCP ports the harness's own servers take on the
// members, which a workload's port cannot have (the harness checks that
// its constants are these).
var ReservedPorts = map[int]string{
	8080: "the cloud's speed-test server",
	8081: "the cloud's content server",
	8082: "the cloud's sink",
	8474: "the runtime's API on every node",
	9090: "the serve workload's local service",
}

// ValidateName checks a scenario's name: it names the report's folder and
// the fleet, so it is plain.
func ValidateName(name string) error {
	if name == "" || !nameRE.MatchString(name) {
		return fmt.Errorf("scenario name %q: use lowercase letters, digits and '-'", name)
	}
	return nil
}

// Errorf is an error at a field path of the scenario (as
// "spec.expect[2].validator"), with the file and line it came from when
// the scenario was parsed: for checks made after loading (the
// validators' parameters, what a provider can model).
func (s *Scenario) Errorf(path, format string, a ...any) error {
	e := &Error{File: s.Source, Msg: path + ": " + fmt.Sprintf(format, a...)}
	if s.root != nil {
		e.Line = lineOf(s.root, path)
	}
	return e
}

// ScenarioSpec is a scenario's content.
type ScenarioSpec struct {
	// Seed is what the links' loss and jitter draw from, so a run can be
	// replayed packet for packet (0: a fresh seed each run, printed and
	// kept in the report; --seed overrides).
	Seed uint64 `yaml:"seed,omitempty"`
	// TimeScale is the scale the scenario runs at unless the user says
	// otherwise (--time-scale): its own durations are divided by it.
	TimeScale float64   `yaml:"timeScale,omitempty"`
	Topology  FleetSpec `yaml:"topology"`
	// Profiles name link conditions the timeline applies.
	Profiles map[string]LinkProfile `yaml:"profiles,omitempty"`
	// Traces name links that change over time (CSV files), which the
	// timeline plays; the built-in traces need no entry.
	Traces map[string]TraceSource `yaml:"traces,omitempty"`
	// Groups name sets of nodes. Every site, building ("site/building"),
	// node and gateway is a group of its own, and "all" is every node.
	Groups    map[string]GroupSpec `yaml:"groups,omitempty"`
	Runtime   RuntimeSpec          `yaml:"runtime"`
	Workloads []Workload           `yaml:"workloads,omitempty"`
	Timeline  []Step               `yaml:"timeline"`
	// Duration is the scenario's length; the timeline must fit in it.
	Duration Duration      `yaml:"duration"`
	Expect   []Expectation `yaml:"expect"`

	// traces are the traces the timeline plays, read at load.
	traces map[string]trace.Trace
}

// GroupSpec selects members: the union of the sites', buildings' and
// listed members', narrowed to one role if Role is set. A site or member
// written with '*' is a pattern (east-*: every site named east-...), for
// counted sites.
type GroupSpec struct {
	Sites     []string `yaml:"sites,omitempty"`
	Buildings []string `yaml:"buildings,omitempty"` // "site/building"
	Members   []string `yaml:"members,omitempty"`
	Role      string   `yaml:"role,omitempty"` // node or gateway
}

// RuntimeSpec is how the harness runs edgeguard on every node (and, for
// failover, on every gateway).
type RuntimeSpec struct {
	Gate     GateSpec     `yaml:"gate"`
	Buffer   BufferSpec   `yaml:"buffer"`
	Failover FailoverSpec `yaml:"failover"`
	Sink     SinkSpec     `yaml:"sink,omitempty"`
	DNS      DNSSpec      `yaml:"dns,omitempty"`
}

// DNSSpec configures how the runtime resolves the cloud's name.
type DNSSpec struct {
	// NoStale makes a failed or late lookup fail the dial, where the
	// runtime otherwise dials the addresses the name last resolved to:
	// a client without that fallback, for comparison (the dns step's
	// negative control).
	NoStale bool `yaml:"noStale,omitempty"`
}

// SinkSpec bounds what the cloud's sink admits (edgeguard sink
// --ingest-*): a region coming back at once is served at this pace, and
// forwarders beyond it are told when to come back (429). Empty: unbounded.
type SinkSpec struct {
	// IngestRate is batch bodies per second, e.g. 40mbit or 5MB/s.
	IngestRate string `yaml:"ingestRate,omitempty"`
	// Concurrency is how many batches are stored at once.
	Concurrency int `yaml:"concurrency,omitempty"`
	// MaxWait is the longest a batch queues before it is refused (not
	// scaled: it is the sink's own time; default 2s).
	MaxWait Duration `yaml:"maxWait,omitempty"`
}

// GateSpec configures the speed gate.
type GateSpec struct {
	// Mode is "on" (the default: workloads ask the gate) or "bypass":
	// workloads ignore it and run whatever the link does. Bypass is what
	// an app without the runtime does; it is here to be compared.
	Mode        string   `yaml:"mode,omitempty"`
	MinDownload string   `yaml:"minDownload,omitempty"`
	MaxLatency  Duration `yaml:"maxLatency,omitempty"`
	// Interval is the time between probes (scaled, at least 1 s).
	Interval Duration `yaml:"interval,omitempty"`
	// FullTest says whether a full speed test confirms before opening
	// (default true); FullDuration is its length per direction (not
	// scaled: it is the network's time; default 3s).
	FullTest     *bool    `yaml:"fullTest,omitempty"`
	FullDuration Duration `yaml:"fullDuration,omitempty"`
	// ConfirmSpread is the longest random pause before a gate's
	// confirmation (not scaled; default 500ms): a region whose links
	// return together spreads its speed tests over it.
	ConfirmSpread Duration `yaml:"confirmSpread,omitempty"`
}

// Bypassed says workloads do not ask the gate.
func (g GateSpec) Bypassed() bool { return g.Mode == "bypass" }

// BufferSpec configures the store-and-forward buffer.
type BufferSpec struct {
	// Durability is "disk" (the default: acknowledged means fsynced),
	// "memory" (acknowledged at once and lost on a crash) or "unsynced"
	// (acknowledged before fsync and lost on a power loss); the last two
	// for comparison.
	Durability string `yaml:"durability,omitempty"`
	// NoJitter makes forwarders wait back-offs and Retry-Afters exactly,
	// as naive ones do (for comparison).
	NoJitter bool `yaml:"noJitter,omitempty"`
}

// FailoverSpec configures failover.
type FailoverSpec struct {
	Enabled bool `yaml:"enabled"`
	// Actions are what a gateway does to its own Node while its uplink is
	// lost: any of label, taint, cordon, drain.
	Actions []string `yaml:"actions,omitempty"`
	// HoldDown is how long the primary must stay healthy before failing
	// back (scaled, at least 2 s); Interval is the probe interval
	// (scaled, at least 200 ms).
	HoldDown Duration `yaml:"holdDown,omitempty"`
	Interval Duration `yaml:"interval,omitempty"`
}

// Workload kinds.
const (
	WorkloadFetch   = "fetch"   // the speed-limited sample workload
	WorkloadProduce = "produce" // records through the buffer
	WorkloadServe   = "serve"   // the store's local payment service
	WorkloadCommand = "command" // the user's own command
)

// Cloud is what a workload's On names to run it in the fleet's cloud, the
// far side of every uplink (an app's broker, ingest API, database).
const Cloud = "cloud"

// Workload runs on every node of a group, or in the cloud.
type Workload struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// On is a group of nodes, or "cloud" (type command only): cloud
	// workloads start first, and every command workload is told where
	// they are (CLOUD_ADDR, <NAME>_ADDR for those with a Port).
	On string `yaml:"on"`
	// Period is the time between fetches, records or (serve) customer
	// calls; scaled.
	Period Duration `yaml:"period,omitempty"`
	// Stream names the records' stream (produce, serve).
	Stream string `yaml:"stream,omitempty"`
	// Size is a produce workload's record payload, with a unit (default
	// 256B, at most 1MiB): larger records build a larger backlog in an
	// outage.
	Size string `yaml:"size,omitempty"`
	// Command is the user's command (type command), run on each node with
	// EDGEGUARD_URL (the node's runtime), CONTENT_URL and SINK_URL set.
	Command []string `yaml:"command,omitempty"`
	// Image runs the workload as a container image, on providers that run
	// pods (not the embedded fleet).
	Image string `yaml:"image,omitempty"`
	// Port is the TCP port a command workload listens on: a cloud
	// workload's is given to the others as <NAME>_ADDR, and Ready probes it.
	Port int `yaml:"port,omitempty"`
	// Ready is what the harness waits for after starting the workload
	// and before going on (the edge side, the timeline).
	Ready *Readiness `yaml:"ready,omitempty"`
	// Kubeconfig gives a command workload on a node its node's own
	// identity for the site's API server ($KUBECONFIG, a copy in its
	// data directory): the Node's credential, allowed to change only
	// that Node. Without it, a workload has no credential for the API.
	Kubeconfig bool `yaml:"kubeconfig,omitempty"`
}

// OnCloud says the workload runs in the cloud.
func (w Workload) OnCloud() bool { return w.On == Cloud }

// Readiness is a check of a workload's Port from its own member: a TCP
// connection, or an HTTP GET of a path answered 2xx.
type Readiness struct {
	TCP  bool   `yaml:"tcp,omitempty"`
	HTTP string `yaml:"http,omitempty"`
	// Within bounds the wait (real time, not scaled; default 30s, at most
	// 5m); a check that has not passed by then fails the run.
	Within Duration `yaml:"within,omitempty"`
}

// ReadyWithin is how long to wait for r.
func (r Readiness) ReadyWithin() time.Duration {
	if r.Within == 0 {
		return 30 * time.Second
	}
	return r.Within.D()
}

// EnvName is the environment variable that carries a cloud workload's
// address: broker -> BROKER_ADDR, ingest-api -> INGEST_API_ADDR.
func EnvName(workload string) string {
	return strings.ToUpper(strings.ReplaceAll(workload, "-", "_")) + "_ADDR"
}

// Step is one moment of the timeline: at At, do one thing to Group.
type Step struct {
	At    Duration `yaml:"at"`
	Group string   `yaml:"group"`
	// One of: apply a named Profile or a Link, cut the link (Outage),
	// Restore the topology's own link, Kill (SIGKILL; the harness restarts
	// it as a kubelet would) or Restart (stop, start) the "runtime", the
	// "workload"s or "workload/NAME". Each kind is an entry of
	// stepActions (actions.go); Action says what a step does.
	Profile string       `yaml:"profile,omitempty"`
	Link    *LinkProfile `yaml:"link,omitempty"`
	Outage  bool         `yaml:"outage,omitempty"`
	Restore bool         `yaml:"restore,omitempty"`
	Kill    string       `yaml:"kill,omitempty"`
	Restart string       `yaml:"restart,omitempty"`
	// Trace plays a trace (spec.traces or a built-in) on the link from At,
	// looping for For, or once when For is 0 (its last row then holds).
	Trace string `yaml:"trace,omitempty"`
	// DiskFull fills the nodes' disks (where their runtime keeps its
	// buffer) to the last byte; For frees them again.
	DiskFull bool `yaml:"diskFull,omitempty"`
	// NewAddress gives the gateways' uplinks a new address, as a cellular
	// or CGNAT uplink gets on reconnect: their nodes' open connections
	// break.
	NewAddress bool `yaml:"newAddress,omitempty"`
	// DNS makes the cloud's name fail to resolve (fail) or resolve late
	// (delay) for the gateways' sites, while IP works; For restores it.
	DNS *DNSFault `yaml:"dns,omitempty"`
	// PowerLoss cuts the nodes' power: every process on them dies at once
	// and their disks lose what was not yet written (fsynced data stays);
	// they boot again after For (at once when For is 0).
	PowerLoss bool `yaml:"powerLoss,omitempty"`
	// For restores the link this long after At (impairments; diskFull
	// frees the disk, powerLoss boots the node).
	For  Duration `yaml:"for,omitempty"`
	Note string   `yaml:"note,omitempty"`
	// Repeat plays the step this many times, Every apart (a flapping
	// link: an outage for 20s every 2m). The loader expands it into that
	// many steps, so nothing after it sees a repeat.
	Repeat int      `yaml:"repeat,omitempty"`
	Every  Duration `yaml:"every,omitempty"`
}

// DNSFault is what a dns step does to the name service: Fail answers
// every query with SERVFAIL; Delay answers each that late.
type DNSFault struct {
	Fail  bool     `yaml:"fail,omitempty"`
	Delay Duration `yaml:"delay,omitempty"`
}

// String says it in words.
func (d DNSFault) String() string {
	if d.Fail {
		return "DNS fails"
	}
	return "DNS answers after " + d.Delay.D().String()
}

// Expectation asks a validator to judge a group. Which validators exist
// and which parameters each takes is the validators package's to say
// (validators.Check).
type Expectation struct {
	Validator string `yaml:"validator"`
	Group     string `yaml:"group,omitempty"`
	// Within bounds how long something may take (not scaled: it is
	// network time); each validator has a default.
	Within Duration `yaml:"within,omitempty"`
	// Max bounds a count (no-restart-loops: unplanned restarts).
	Max *int `yaml:"max,omitempty"`
	// MinShare is the share that must succeed (local-service-answers).
	MinShare string `yaml:"minShare,omitempty"`
	// Ordered asks for order as well (delivered: per sender).
	Ordered bool `yaml:"ordered,omitempty"`
	// Workload is the app workload judged (endpoint-answers, metric): a
	// command workload with a port.
	Workload string `yaml:"workload,omitempty"`
	// From is where endpoint-answers probes from: "lan" (the site's
	// gateway, on the node's LAN; the default) or "node" (the node
	// itself).
	From string `yaml:"from,omitempty"`
	// HTTP is the path probed (endpoint-answers; none: a TCP connection)
	// or scraped (metric; default /metrics).
	HTTP string `yaml:"http,omitempty"`
	// MaxLatency bounds an answer's time (endpoint-answers): a slower one
	// counts as not answered.
	MaxLatency Duration `yaml:"maxLatency,omitempty"`
	// Metric is a bound on a Prometheus series the workload exposes:
	// 'name{label="v"} <= 100' (metric).
	Metric string `yaml:"metric,omitempty"`
	// Phase is when the bound must hold (metric): always (the default),
	// before (the first outage), during (outages) or after (the last
	// restore, plus within).
	Phase string `yaml:"phase,omitempty"`
}

// Duration is a YAML duration written like Go's ("90s", "1h30m").
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses "90s"; a bare number is refused (no unit).
func (d *Duration) UnmarshalYAML(v *yaml.Node) error {
	x, err := units.ParseDuration("duration", v.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", v.Line, err)
	}
	*d = Duration(x)
	return nil
}

// MarshalYAML writes it back as "90s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Member is a node or gateway of a topology, with where it is.
type Member struct {
	Name     string
	Role     string // "node" or "gateway" ("cloud" from StepMembers)
	Site     string
	Building string // "" for a site without buildings
	Gateway  string // a node's own gateway
	// Link is the member's own link profile from the topology (a
	// gateway's uplink, a node's LAN link), what a restore returns to.
	Link *LinkProfile
}

// Members lists the topology's nodes and gateways in order, nodeCount
// expanded.
func (s *FleetSpec) Members() []Member {
	var out []Member
	add := func(site, building string, gw Gateway, nodes []Node, count int, prefix string) {
		out = append(out, Member{Name: gw.Name, Role: "gateway", Site: site, Building: building, Link: gw.Uplink})
		for _, n := range ExpandNodes(prefix, nodes, count) {
			out = append(out, Member{Name: n.Name, Role: "node", Site: site, Building: building, Gateway: gw.Name, Link: n.Link})
		}
	}
	for _, st := range s.Sites {
		if len(st.Buildings) == 0 && st.Gateway != nil {
			add(st.Name, "", *st.Gateway, st.Nodes, st.NodeCount, st.Name)
		}
		for _, b := range st.Buildings {
			add(st.Name, b.Name, b.Gateway, b.Nodes, b.NodeCount, st.Name+"-"+b.Name)
		}
	}
	return out
}

// LoadScenarioFile reads a Scenario document from a file.
func LoadScenarioFile(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return ParseScenario(path, b)
}

// ParseScenario parses and validates a Scenario document; file names the
// source in errors.
func ParseScenario(file string, data []byte) (*Scenario, error) {
	// Source first: trace files are read relative to it.
	s := Scenario{root: &yaml.Node{}, Source: file}
	if err := parseNode(file, data, &s, "expected apiVersion, kind: Scenario, spec", s.validate, s.root); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Scenario) validate() error {
	if s.APIVersion != APIVersion {
		return perr("apiVersion", "apiVersion %q: this edgefault reads %s", s.APIVersion, APIVersion)
	}
	if s.Kind != "Scenario" {
		return perr("kind", "kind %q: expected Scenario", s.Kind)
	}
	if err := ValidateName(s.Metadata.Name); err != nil {
		return perr("metadata.name", "%v", err)
	}
	sp := &s.Spec
	if sp.TimeScale < 0 || math.IsNaN(sp.TimeScale) || math.IsInf(sp.TimeScale, 0) || (sp.TimeScale > 0 && sp.TimeScale < 1) {
		return perr("spec.timeScale", "timeScale %v: use 1 (real time) or more", sp.TimeScale)
	}
	if err := sp.Topology.Validate("spec.topology"); err != nil {
		return err
	}
	for name, p := range sp.Profiles {
		if !nameRE.MatchString(name) {
			return perr("spec.profiles."+name, "profile name %q: use lowercase letters, digits and '-'", name)
		}
		if _, err := p.Impairment("spec.profiles." + name); err != nil {
			return err
		}
	}
	members := sp.Topology.Members()
	for name, g := range sp.Groups {
		gp := "spec.groups." + name
		if !nameRE.MatchString(name) || name == "all" || name == Cloud {
			return perr(gp, "group name %q: use lowercase letters, digits and '-' (and not \"all\" or \"cloud\")", name)
		}
		if implicitGroup(members, sp.Topology, name) {
			return perr(gp, "group name %q is already a site, node or gateway of the topology", name)
		}
		if err := g.check(gp, sp.Topology, members); err != nil {
			return err
		}
	}
	if err := sp.Runtime.check("spec.runtime"); err != nil {
		return err
	}
	wnames := map[string]bool{}
	servers := map[string]string{} // node -> its serve workload: one port each
	ports := map[string]string{}   // member/port -> the workload listening there
	for i, w := range sp.Workloads {
		wp := fmt.Sprintf("spec.workloads[%d]", i)
		if w.Name == "" || !nameRE.MatchString(w.Name) {
			return perr(wp+".name", "workload name %q: use lowercase letters, digits and '-'", w.Name)
		}
		if wnames[w.Name] {
			return perr(wp+".name", "workload %q appears twice", w.Name)
		}
		// A workload's evidence is <node>-<name>.jsonl beside the
		// runtime's and the harness's own: their names are taken.
		if slices.Contains(reservedWorkloadNames, w.Name) {
			return perr(wp+".name", "workload name %q is taken by the runtime or the harness's own evidence (%s): pick another", w.Name, strings.Join(reservedWorkloadNames, ", "))
		}
		wnames[w.Name] = true
		switch w.Type {
		case WorkloadFetch, WorkloadProduce, WorkloadServe:
			if len(w.Command) > 0 || w.Image != "" {
				return perr(wp, "workload %q: command and image are for type command", w.Name)
			}
		case WorkloadCommand:
			if len(w.Command) == 0 && w.Image == "" {
				return perr(wp+".command", "workload %q of type command needs a command (or an image, on providers that run pods)", w.Name)
			}
		default:
			return perr(wp+".type", "workload type %q: use fetch, produce, serve or command", w.Type)
		}
		if w.Size != "" {
			if w.Type != WorkloadProduce {
				return perr(wp+".size", "workload %q: size is for type produce (its records' payload)", w.Name)
			}
			n, err := units.ParseSize("size", w.Size)
			if err != nil {
				return perr(wp+".size", "workload %q: %v", w.Name, err)
			}
			if n < 1 || n > 1<<20 {
				return perr(wp+".size", "workload %q: size %s out of range: 1B to 1MiB", w.Name, w.Size)
			}
		}
		if w.Port != 0 || w.Ready != nil {
			if w.Type != WorkloadCommand {
				return perr(wp, "workload %q: port and ready are for type command", w.Name)
			}
			if w.Port == 0 {
				return perr(wp+".port", "workload %q: ready probes the workload's port: give port", w.Name)
			}
			if w.Port < 1 || w.Port > 65535 {
				return perr(wp+".port", "workload %q: port %d is not a TCP port (1-65535)", w.Name, w.Port)
			}
			if what, ok := ReservedPorts[w.Port]; ok {
				return perr(wp+".port", "workload %q: port %d is %s: pick another", w.Name, w.Port, what)
			}
		}
		if w.Kubeconfig && (w.Type != WorkloadCommand || w.OnCloud()) {
			return perr(wp+".kubeconfig", "workload %q: kubeconfig is for command workloads on nodes (the cloud is in no site)", w.Name)
		}
		if r := w.Ready; r != nil {
			switch {
			case r.TCP == (r.HTTP != ""):
				return perr(wp+".ready", "workload %q: ready takes one check, tcp: true or http: /path", w.Name)
			case r.HTTP != "" && (!strings.HasPrefix(r.HTTP, "/") || strings.ContainsAny(r.HTTP, " \t\r\n#")):
				return perr(wp+".ready.http", "workload %q: %q is not a URL path (write /healthz)", w.Name, r.HTTP)
			case r.Within != 0 && (r.Within.D() < time.Second || r.Within.D() > 5*time.Minute):
				return perr(wp+".ready.within", "workload %q: wait between 1s and 5m for readiness", w.Name)
			}
		}
		if w.Port != 0 {
			members := []string{Cloud}
			if !w.OnCloud() {
				ms, _ := sp.Resolve(w.On)
				members = members[:0]
				for _, m := range ms {
					members = append(members, m.Name)
				}
			}
			for _, m := range members {
				key := fmt.Sprintf("%s/%d", m, w.Port)
				if other, ok := ports[key]; ok {
					return perr(wp+".port", "workload %q: %s already has workload %q on port %d", w.Name, m, other, w.Port)
				}
				ports[key] = w.Name
			}
		}
		if w.OnCloud() {
			if EnvName(w.Name) == "CLOUD_ADDR" {
				return perr(wp+".name", "workload %q: its address would be CLOUD_ADDR, the cloud's own: pick another name", w.Name)
			}
			if w.Type != WorkloadCommand {
				return perr(wp+".on", "workload %q: the cloud runs workloads of type command (the sample workloads run on nodes)", w.Name)
			}
			if w.Image != "" {
				return perr(wp+".image", "workload %q: the cloud runs commands, not images (images run as pods on nodes)", w.Name)
			}
			continue
		}
		ms, err := sp.Resolve(w.On)
		if err != nil {
			return perr(wp+".on", "%v", err)
		}
		for _, m := range ms {
			if w.Type == WorkloadServe && m.Role == "node" {
				if other, ok := servers[m.Name]; ok {
					return perr(wp+".on", "node %s already runs serve workload %q: one local service per node", m.Name, other)
				}
				servers[m.Name] = w.Name
			}
		}
	}
	if sp.Duration <= 0 {
		return perr("spec.duration", "a scenario needs a duration (e.g. 1h)")
	}
	if err := sp.loadTraces(s.Source); err != nil {
		return err
	}
	for i, st := range sp.Timeline {
		if err := sp.checkStep(fmt.Sprintf("spec.timeline[%d]", i), st, wnames); err != nil {
			return err
		}
		if i > 0 && st.At < sp.Timeline[i-1].At {
			return perr(fmt.Sprintf("spec.timeline[%d].at", i), "at %v comes before the previous step's %v: list steps in time order", st.At.D(), sp.Timeline[i-1].At.D())
		}
		if err := sp.checkRepeat(fmt.Sprintf("spec.timeline[%d]", i), st); err != nil {
			return err
		}
	}
	sp.expandRepeats()
	if len(sp.Expect) == 0 {
		return perr("spec.expect", "a scenario needs at least one expectation: without one nothing is judged")
	}
	for i, e := range sp.Expect {
		ep := fmt.Sprintf("spec.expect[%d]", i)
		if e.Validator == "" {
			return perr(ep+".validator", "an expectation needs a validator")
		}
		if e.MinShare != "" {
			if _, err := units.Percent("minShare", e.MinShare); err != nil {
				return perr(ep+".minShare", "%v", err)
			}
		}
		if e.Max != nil && *e.Max < 0 {
			return perr(ep+".max", "max %d is negative", *e.Max)
		}
		if e.Group != "" {
			if _, err := sp.Resolve(e.Group); err != nil {
				return perr(ep+".group", "%v", err)
			}
		}
	}
	return nil
}

func (g GroupSpec) check(at string, t FleetSpec, members []Member) error {
	if g.Role != "" && g.Role != "node" && g.Role != "gateway" {
		return perr(at+".role", "role %q: use node or gateway", g.Role)
	}
	for i, s := range g.Sites {
		if _, err := path.Match(s, ""); err != nil {
			return perr(fmt.Sprintf("%s.sites[%d]", at, i), "site pattern %q: %v", s, err)
		}
		if !slices.ContainsFunc(t.Sites, func(st Site) bool { return nameMatch(s, st.Name) }) {
			return perr(fmt.Sprintf("%s.sites[%d]", at, i), "no site %q in the topology", s)
		}
	}
	for i, b := range g.Buildings {
		site, bld, _ := strings.Cut(b, "/")
		if !hasBuilding(t, site, bld) {
			return perr(fmt.Sprintf("%s.buildings[%d]", at, i), "no building %q in the topology: write site/building, e.g. factory/a", b)
		}
	}
	for i, m := range g.Members {
		if _, err := path.Match(m, ""); err != nil {
			return perr(fmt.Sprintf("%s.members[%d]", at, i), "member pattern %q: %v", m, err)
		}
		if !slices.ContainsFunc(members, func(x Member) bool { return nameMatch(m, x.Name) }) {
			return perr(fmt.Sprintf("%s.members[%d]", at, i), "no node or gateway %q in the topology", m)
		}
	}
	if len(g.Sites)+len(g.Buildings)+len(g.Members) == 0 {
		return perr(at, "an empty group: list sites, buildings or members")
	}
	return nil
}

func (r RuntimeSpec) check(path string) error {
	switch r.Gate.Mode {
	case "", "on", "bypass":
	default:
		return perr(path+".gate.mode", "gate mode %q: use on or bypass", r.Gate.Mode)
	}
	if r.Gate.MinDownload == "" && r.Gate.MaxLatency == 0 {
		return perr(path+".gate.minDownload", "the gate needs a threshold: minDownload (e.g. 5mbit) or maxLatency")
	}
	if r.Gate.MinDownload != "" {
		if _, err := units.ParseRate(r.Gate.MinDownload); err != nil {
			return perr(path+".gate.minDownload", "%v", err)
		}
	}
	if d := r.Gate.ConfirmSpread.D(); d < 0 || d > time.Minute {
		return perr(path+".gate.confirmSpread", "confirmSpread %v is out of range: 0 to 1m (a few seconds spread a region's speed tests)", d)
	}
	switch r.Buffer.Durability {
	case "", "disk", "memory", "unsynced":
	default:
		return perr(path+".buffer.durability", "durability %q: use disk, memory or unsynced", r.Buffer.Durability)
	}
	if r.Sink.IngestRate != "" {
		if _, err := units.ParseRate(r.Sink.IngestRate); err != nil {
			return perr(path+".sink.ingestRate", "%v", err)
		}
	}
	if r.Sink.Concurrency < 0 || r.Sink.Concurrency > 10000 {
		return perr(path+".sink.concurrency", "concurrency %d: use 1 to 10000, or leave it out (unbounded)", r.Sink.Concurrency)
	}
	if r.Sink.MaxWait < 0 || r.Sink.MaxWait.D() > time.Minute {
		return perr(path+".sink.maxWait", "maxWait %v: use up to 1m (a forwarder's request would time out first)", r.Sink.MaxWait.D())
	}
	for i, a := range r.Failover.Actions {
		switch a {
		case "label", "taint", "cordon", "drain":
		default:
			return perr(fmt.Sprintf("%s.failover.actions[%d]", path, i), "failover action %q: use label, taint, cordon or drain", a)
		}
	}
	return nil
}

func (sp *ScenarioSpec) checkStep(path string, st Step, workloads map[string]bool) error {
	if _, err := sp.StepMembers(st); err != nil {
		return perr(path+".group", "%v", err)
	}
	k, err := kindOf(st)
	if err != nil {
		return perr(path, "%v", err)
	}
	if st.Group == Cloud && k.kind != "kill" && k.kind != "restart" {
		return perr(path+".group", "a step on the cloud kills or restarts a cloud workload; impair the sites' uplinks (their gateways) or nodes instead")
	}
	if k.check != nil {
		if err := k.check(sp, path, st, workloads); err != nil {
			return err
		}
	}
	if end := st.At + st.For; end > sp.Duration {
		return perr(path+".at", "the step ends at %v, after the scenario's duration %v", end.D(), sp.Duration.D())
	}
	return nil
}

// runs says whether node (or the cloud) runs the workload called name
// ("" for any).
func (sp *ScenarioSpec) runs(node, name string) bool {
	for _, w := range sp.Workloads {
		if name != "" && w.Name != name {
			continue
		}
		if w.OnCloud() {
			if node == Cloud {
				return true
			}
			continue
		}
		ms, _ := sp.Resolve(w.On)
		for _, m := range ms {
			if m.Name == node && m.Role == "node" {
				return true
			}
		}
	}
	return false
}

func hasSite(t FleetSpec, name string) bool {
	for _, s := range t.Sites {
		if s.Name == name {
			return true
		}
	}
	return false
}

func hasBuilding(t FleetSpec, site, b string) bool {
	for _, s := range t.Sites {
		if s.Name != site {
			continue
		}
		for _, x := range s.Buildings {
			if x.Name == b {
				return true
			}
		}
	}
	return false
}

func findMember(ms []Member, name string) *Member {
	for i := range ms {
		if ms[i].Name == name {
			return &ms[i]
		}
	}
	return nil
}

// nameMatch says whether name is pattern, or matches it where the
// pattern holds a '*' (names hold no other pattern characters).
func nameMatch(pattern, name string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == name
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

func implicitGroup(ms []Member, t FleetSpec, name string) bool {
	return hasSite(t, name) || findMember(ms, name) != nil
}

// StepMembers lists the members a timeline step acts on: its group's
// (Resolve), or the cloud itself (Role "cloud") for a step on the cloud.
func (sp *ScenarioSpec) StepMembers(st Step) ([]Member, error) {
	if st.Group == Cloud {
		return []Member{{Name: Cloud, Role: Cloud}}, nil
	}
	return sp.Resolve(st.Group)
}

// Resolve lists the members a group names, in topology order: a group of
// spec.groups, "all" (every node), a site (its nodes), "site/building"
// (its nodes), or one node or gateway by name.
func (sp *ScenarioSpec) Resolve(group string) ([]Member, error) {
	ms := sp.Topology.Members()
	pick := func(keep func(Member) bool) []Member {
		var out []Member
		for _, m := range ms {
			if keep(m) {
				out = append(out, m)
			}
		}
		return out
	}
	if g, ok := sp.Groups[group]; ok {
		set := map[string]bool{}
		for _, s := range g.Sites {
			for _, m := range ms {
				set[m.Name] = set[m.Name] || nameMatch(s, m.Site)
			}
		}
		for _, b := range g.Buildings {
			site, bld, _ := strings.Cut(b, "/")
			for _, m := range ms {
				set[m.Name] = set[m.Name] || (m.Site == site && m.Building == bld)
			}
		}
		for _, n := range g.Members {
			for _, m := range ms {
				set[m.Name] = set[m.Name] || nameMatch(n, m.Name)
			}
		}
		out := pick(func(m Member) bool { return set[m.Name] && (g.Role == "" || g.Role == m.Role) })
		if len(out) == 0 {
			return nil, fmt.Errorf("group %q selects no member (role %s)", group, g.Role)
		}
		return out, nil
	}
	switch {
	case group == "":
		return nil, errors.New("a group is required: a group of spec.groups, all, a site, site/building, or a node or gateway")
	case group == "all":
		return pick(func(m Member) bool { return m.Role == "node" }), nil
	case hasSite(sp.Topology, group):
		return pick(func(m Member) bool { return m.Site == group && m.Role == "node" }), nil
	case strings.Contains(group, "/"):
		site, b, _ := strings.Cut(group, "/")
		if hasBuilding(sp.Topology, site, b) {
			return pick(func(m Member) bool { return m.Site == site && m.Building == b && m.Role == "node" }), nil
		}
	case findMember(ms, group) != nil:
		return []Member{*findMember(ms, group)}, nil
	}
	return nil, fmt.Errorf("no group %q: name a group of spec.groups, all, a site, site/building, or a node or gateway of the topology", group)
}

// Scale is the time scale to run at: override if set, else the
// scenario's own, else 1.
func (s *Scenario) Scale(override float64) float64 {
	switch {
	case override > 0:
		return override
	case s.Spec.TimeScale > 0:
		return s.Spec.TimeScale
	}
	return 1
}

// Scaled divides a scenario duration by scale, keeping at least floor.
func Scaled(d Duration, scale float64, floor time.Duration) time.Duration {
	if scale <= 0 {
		scale = 1
	}
	return max(time.Duration(float64(d)/scale), floor)
}

// maxRepeat bounds a repeated step (a timeline is read by people).
const maxRepeat = 1000

// checkRepeat checks a step's repeat and every.
func (sp *ScenarioSpec) checkRepeat(path string, st Step) error {
	if st.Repeat == 0 && st.Every == 0 {
		return nil
	}
	switch {
	case st.Repeat < 2 || st.Repeat > maxRepeat:
		return perr(path+".repeat", "repeat %d: give how many times to play the step, 2 to %d, with every", st.Repeat, maxRepeat)
	case st.Every <= 0:
		return perr(path+".every", "a repeated step needs every: the time from one start to the next (e.g. every: 2m)")
	case st.For > 0 && st.Every <= st.For:
		return perr(path+".every", "every %v is not longer than for %v: each time would start before the last was restored", st.Every.D(), st.For.D())
	case sp.Action(st).Process == "" && !st.Restore && st.For == 0:
		return perr(path+".for", "a repeated impairment needs for: how long each one lasts")
	case st.Every >= sp.Duration:
		return perr(path+".every", "every %v is not shorter than the scenario's duration %v", st.Every.D(), sp.Duration.D())
	}
	if last := st.At + Duration(st.Repeat-1)*st.Every; last+st.For > sp.Duration {
		return perr(path+".repeat", "the last of %d times, at %v for %v, ends past the scenario's duration %v: repeat fewer times or lengthen the duration", st.Repeat, last.D(), st.For.D(), sp.Duration.D())
	}
	return nil
}

// expandRepeats replaces each repeated step by its plays, in time order.
func (sp *ScenarioSpec) expandRepeats() {
	var out []Step
	expanded := false
	for _, st := range sp.Timeline {
		if st.Repeat == 0 {
			out = append(out, st)
			continue
		}
		expanded = true
		for k := range st.Repeat {
			c := st
			c.At = st.At + Duration(k)*st.Every
			c.Repeat, c.Every = 0, 0
			c.Note = strings.TrimSpace(fmt.Sprintf("%s (%d of %d)", st.Note, k+1, st.Repeat))
			out = append(out, c)
		}
	}
	if expanded {
		sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
		sp.Timeline = out
	}
}
