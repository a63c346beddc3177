package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/validators"
)

// Report is one run of edgefault run or certify: every scenario played,
// with its verdicts.
type Report struct {
	Started   time.Time        `json:"started"`
	Duration  time.Duration    `json:"durationNs"`
	Provider  string           `json:"provider"`
	Pass      bool             `json:"pass"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// ScenarioResult is one scenario's run.
type ScenarioResult struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Source is the file it came from, or "built-in".
	Source string `json:"source"`
	// Provider made the fleet it ran on; Backend is how its links were
	// shaped.
	Provider string `json:"provider,omitempty"`
	Backend  string `json:"backend,omitempty"`
	// Cluster is the cluster the fleet was played by, where the harness
	// did not make it (clusters.OnCluster), and Placement where each
	// member ran there ("cloud: node lab-2; truck-ecu: node lab-1").
	Cluster   string `json:"cluster,omitempty"`
	Placement string `json:"placement,omitempty"`
	// TimeScale divided the scenario's own durations (1: real time).
	TimeScale float64 `json:"timeScale"`
	// Seed is what the links' loss and jitter drew from: --seed replays
	// the same drops on the same traffic.
	Seed uint64 `json:"seed,omitempty"`
	// Runtime is the runtime's settings in words ("gate on, buffer on
	// disk, failover on").
	Runtime string `json:"runtime"`
	// Sites says what each site ran besides its network and runtime: its
	// control plane's processes, or none (where the provider gives each
	// site its own).
	Sites []SiteRun `json:"sites,omitempty"`
	// FleetUp is how long the provider took to bring the fleet up;
	// Memory what its processes and the harness held once everything
	// ran (providers that can tell).
	FleetUp time.Duration    `json:"fleetUpNs,omitempty"`
	Memory  *clusters.Memory `json:"memory,omitempty"`
	// Started is when the timeline started (time zero of Windows and
	// samples); Duration is the wall time of the whole run, set-up
	// included; Timeline is the scaled timeline's length.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"durationNs"`
	Timeline time.Duration `json:"timelineNs"`
	Pass     bool          `json:"pass"`
	// Error is set when the run itself failed (set-up, a timeline step):
	// then Verdicts may be missing.
	Error    string               `json:"error,omitempty"`
	Verdicts []validators.Verdict `json:"verdicts"`
	Windows  []Window             `json:"windows"`
	Nodes    []NodeSeries         `json:"nodes"`
	// Evidence is the directory the raw evidence was copied to.
	Evidence string `json:"evidence,omitempty"`
}

// SiteRun is what one site ran.
type SiteRun struct {
	Site string `json:"site"`
	// ControlPlane lists its processes ("etcd, kube-apiserver, kwok"), or
	// is "none".
	ControlPlane string `json:"controlPlane"`
}

// Resources says in one line how long the fleet took to come up and what
// memory it held ("" when not measured).
func (s ScenarioResult) Resources() string {
	var parts []string
	if s.FleetUp > 0 {
		parts = append(parts, fmt.Sprintf("up in %.1f s", s.FleetUp.Seconds()))
	}
	if m := s.Memory; m != nil {
		parts = append(parts, fmt.Sprintf("%d processes, the harness included, holding %.2f GiB resident (a shared binary counted in each), %.2f GiB anonymous, %.2f GiB proportional share",
			m.Processes, gib(m.RSS), gib(m.Anon), gib(m.PSS)))
	}
	return strings.Join(parts, ", ")
}

func gib(b uint64) float64 { return float64(b) / (1 << 30) }

// SitesSummary says what the sites ran in one line, sites that ran the
// same counted together: "etcd, kube-apiserver, kwok (2 sites); none
// (100 sites)".
func (s ScenarioResult) SitesSummary() string {
	var order []string
	count := map[string]int{}
	for _, st := range s.Sites {
		if count[st.ControlPlane] == 0 {
			order = append(order, st.ControlPlane)
		}
		count[st.ControlPlane]++
	}
	var parts []string
	for _, cp := range order {
		n := "1 site"
		if count[cp] > 1 {
			n = fmt.Sprintf("%d sites", count[cp])
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", cp, n))
	}
	return strings.Join(parts, "; ")
}

// Window is an impairment applied during the timeline, relative to
// ScenarioResult.Started.
type Window struct {
	Target string        `json:"target"` // the node or gateway shaped
	Group  string        `json:"group"`  // the timeline's group
	What   string        `json:"what"`   // "outage", "rate 3mbit delay 325ms loss 0.5%"
	Outage bool          `json:"outage"`
	Start  time.Duration `json:"startNs"`
	End    time.Duration `json:"endNs"`
}

// NodeSeries is what the harness sampled from one node's runtime.
type NodeSeries struct {
	Node string `json:"node"`
	Role string `json:"role"` // node or gateway
	// Gateway is a node's own gateway: its uplink's windows are the
	// node's too.
	Gateway string   `json:"gateway,omitempty"`
	Samples []Sample `json:"samples"`
}

// Sample is one reading, T after ScenarioResult.Started.
type Sample struct {
	T time.Duration `json:"tNs"`
	// Gate is the gate's state ("open", "closed", "unknown"; "" if no
	// runtime answered).
	Gate string `json:"gate,omitempty"`
	// Failover is the failover state ("primary", "alternate", "degraded"; "" if off).
	Failover string `json:"failover,omitempty"`
	// BufferDepth is the records waiting in the node's buffer.
	BufferDepth int64 `json:"bufferDepth"`
	// RxBps and TxBps are the node's traffic (all its interfaces but
	// loopback) in bits per second since the previous sample.
	RxBps float64 `json:"rxBps"`
	TxBps float64 `json:"txBps"`
}
