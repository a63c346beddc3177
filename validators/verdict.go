package validators

import (
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
)

// Verdict is what one validator decided about one group, with the numbers
// and the events that decided it.
type Verdict struct {
	// Validator is the validator's name (gate-follows-link, ...).
	Validator string `json:"validator"`
	// Group is the group of nodes it judged.
	Group string `json:"group"`
	Pass  bool   `json:"pass"`
	// Summary says in a sentence what was seen, e.g. "truck-1: closed 2.1 s
	// after the degradation (bound 15 s), reopened 6.3 s after the restore".
	Summary string `json:"summary"`
	// Lines are the summary's parts, a row each (mostly one per node),
	// failures first.
	Lines []string `json:"lines,omitempty"`
	// Numbers are the measured figures the verdict rests on, by name.
	Numbers map[string]float64 `json:"numbers,omitempty"`
	// Evidence quotes the events that decided it (a few, not the stream).
	Evidence []wire.Event `json:"evidence,omitempty"`
	// Marks are instants worth drawing on a node's chart.
	Marks []Mark `json:"marks,omitempty"`
}

// Mark is a moment a verdict points at on one node's timeline.
type Mark struct {
	Node  string    `json:"node"`
	Time  time.Time `json:"time"`
	Label string    `json:"label"`
	Pass  bool      `json:"pass"`
}
