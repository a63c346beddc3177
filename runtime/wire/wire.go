// Package wire holds the formats the runtime and the harness share: the event
// record every component appends to its event log, and the gate's status
// document served at /v1/gate. It has no dependencies beyond the standard
// library so the harness can read evidence without linking the runtime.
package wire

import "time"

// Event is one line of an event log (JSON lines). Components: "gate",
// "speedserver", "content", "workload"; Event names are lower-case verbs
// or states ("open", "closed", "unknown", "probe", "fetched", "served").
type Event struct {
	Time      time.Time      `json:"time"`
	Node      string         `json:"node"`
	Component string         `json:"component"`
	Event     string         `json:"event"`
	Fields    map[string]any `json:"fields,omitempty"`
}

// GateState is the speed gate's verdict on the link.
type GateState string

// The three gate states. Unknown means no trustworthy measurement (not
// started yet, server unreachable, garbage answers); it is not open unless
// the gate was configured to fail open.
const (
	Unknown GateState = "unknown"
	Open    GateState = "open"
	Closed  GateState = "closed"
)

// Measurement is one probe or speed test of the link.
type Measurement struct {
	Time time.Time `json:"time"`
	// Kind is "full" (a speedtest-go test), "probe" (a bounded-byte probe)
	// or "passive" (traffic the workload reported).
	Kind string `json:"kind"`
	// DownloadBps and UploadBps are bits per second; 0 when not measured.
	DownloadBps float64       `json:"downloadBps,omitempty"`
	UploadBps   float64       `json:"uploadBps,omitempty"`
	Latency     time.Duration `json:"latencyNs,omitempty"`
	// Bytes is what the measurement moved over the link, both directions.
	Bytes int64 `json:"bytes"`
	// Cut says a probe ran out of time (the link is slower than the
	// threshold even allowing for slow start).
	Cut bool `json:"cut,omitempty"`
	// Verdict is "good", "band", "bad" or "failed" against the thresholds.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"`
}

// GateStatus is the document served at /v1/gate.
type GateStatus struct {
	Node      string    `json:"node"`
	State     GateState `json:"state"`
	Open      bool      `json:"open"` // State == Open, or Unknown with fail-open
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
	Server    string    `json:"server"`
	Seq       uint64    `json:"seq"` // increments on every state change
	FailOpen  bool      `json:"failOpen"`
	Threshold struct {
		MinDownloadBps float64       `json:"minDownloadBps"`
		MaxLatency     time.Duration `json:"maxLatencyNs,omitempty"`
		MinUploadBps   float64       `json:"minUploadBps,omitempty"`
		Hysteresis     float64       `json:"hysteresis"`
	} `json:"threshold"`
	CapacityBps  float64       `json:"capacityBps,omitempty"` // last full test
	ProbeBytes   int64         `json:"probeBytes"`            // bytes spent probing, all kinds
	ProbeBudget  float64       `json:"probeBudgetBytesPerSec"`
	Interval     time.Duration `json:"probeIntervalNs"`
	Measurements []Measurement `json:"measurements"` // newest last
}
