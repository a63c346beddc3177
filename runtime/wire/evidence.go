package wire

import (
	"encoding/json"
	"fmt"
)

// Decode reads the event's fields into v, a struct whose json tags name
// them: how the typed kinds of evidence below are read back.
func (e Event) Decode(v any) error {
	b, err := json.Marshal(e.Fields)
	if err != nil {
		return fmt.Errorf("event %s/%s: %w", e.Component, e.Event, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("event %s/%s of %s: %w", e.Component, e.Event, e.Node, err)
	}
	return nil
}

// Fields turns a struct with json tags into an event's fields, the other
// way round from Decode.
func Fields(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// Sample is the harness's reading of one member (component "sampler",
// event "sample"): its runtime's state over the management path and its
// traffic counters. A nil or empty field was not read.
type Sample struct {
	Gate     GateState `json:"gate,omitempty"`
	Failover string    `json:"failover,omitempty"`
	// Depth is the records waiting in the member's buffer.
	Depth *int64 `json:"depth,omitempty"`
	// Rx and Tx are the bytes the member received and sent on its links
	// so far (loopback excluded).
	Rx *int64 `json:"rx,omitempty"`
	Tx *int64 `json:"tx,omitempty"`
	// By says who took it when not the sampler ("settle").
	By string `json:"by,omitempty"`
}

// NodeMark is a change the harness saw on a member's Node object in its
// site's Kubernetes API (component "kube", event "node").
type NodeMark struct {
	Site          string `json:"site"`
	Uplink        string `json:"uplink"`
	Tainted       bool   `json:"tainted"`
	Unschedulable bool   `json:"unschedulable"`
}
