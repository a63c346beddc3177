// Package harness runs edgefault's end-to-end work: it brings a fleet up,
// plays impairments on it, measures what happens through the real links,
// judges it and writes a report. Until the scenario runner exists, Demo is
// the main job: one node throttled and one uplink cut, measured, reported
// and torn down.
package harness
