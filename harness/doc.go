// Package harness plays scenarios and judges them. Run brings a fleet up
// through a clusters.Provider (refusing first what the provider cannot
// model), starts the cloud's services and the runtime on every node under
// a supervisor that restarts what exits, starts the workloads, plays the
// timeline of impairments and crashes at the scenario's time scale, waits
// for the runtime to settle, collects the evidence, and has the validators
// judge it; Certify does that for several scenarios and writes the report
// (package harness/report). Demo is the talk's demo on the built-in fleet.
//
// The harness knows a fleet only through package clusters: adding a
// provider changes nothing here (docs/providers.md). harness/edgetest
// wraps Run for Ginkgo suites.
package harness
