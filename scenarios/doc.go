// Package scenarios is edgefault's versioned YAML format. A document looks
// like a Kubernetes object (apiVersion, kind, metadata, spec). Kind Fleet
// holds a topology in the words of the model — sites, buildings, nodes,
// gateways and their uplink profiles; later kinds (Scenario) embed the same
// topology, so there is one format, not two.
//
// Parsing is strict: an unknown field, a rate without a unit, a duplicate
// or reserved name is an error that names the file and line.
package scenarios
