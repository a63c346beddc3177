package wire

import (
	"encoding/json"
	"testing"
)

// Typed evidence survives the trip through an event log: emitted as
// fields, written as JSON, read back and decoded.
func TestEvidenceRoundTrip(t *testing.T) {
	depth, rx := int64(42), int64(1<<40)
	in := Sample{Gate: Open, Failover: "alternate", Depth: &depth, Rx: &rx}
	b, err := json.Marshal(Event{Node: "n1", Component: "sampler", Event: "sample", Fields: Fields(in)})
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	var out Sample
	if err := e.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Gate != Open || out.Failover != "alternate" || out.Depth == nil || *out.Depth != 42 || out.Rx == nil || *out.Rx != 1<<40 || out.Tx != nil {
		t.Errorf("round trip: %+v", out)
	}
	bad := Event{Component: "kube", Event: "node", Fields: map[string]any{"tainted": "yes"}}
	var m NodeMark
	if err := bad.Decode(&m); err == nil {
		t.Error("a mistyped field decoded")
	}
}
