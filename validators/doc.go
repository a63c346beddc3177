// Package validators judges a scenario run against its expectations. Each
// validator reads the evidence the run left (the merged, time-ordered
// event stream of the runtime, the workloads, the cloud's servers and the
// harness; the sink's records; the impairments as applied) and returns a
// Verdict: pass or fail, the numbers that decided it and the events it
// rests on.
//
// One file per validator, each a small type with one method. To add one:
// write the type and give it a line in the registry (registry.go), which
// says the name scenario files use and the parameters it takes; Check
// holds scenario files to it.
package validators
