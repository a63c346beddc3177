package scenarios

import (
	"errors"
	"testing"
	"time"
)

// A scenario or fleet file, however broken, is answered with a *Error
// (file, line, what) or accepted; never a panic, never an error of
// another kind.
func FuzzParseDocuments(f *testing.F) {
	// Small seeds: the fuzzer mutates a few hundred bytes far better than
	// the built-ins' commented kilobytes (with those it made no progress).
	f.Add([]byte(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: m}
spec:
  timeScale: 10
  topology: {sites: [{name: s, gateway: {name: gw, uplink: {rate: 20mbit, delay: 10ms}}, nodes: [n1]}]}
  profiles: {slow: {rate: 1mbit, loss: 1%}}
  groups: {g: {members: [n1]}}
  runtime: {gate: {minDownload: 2mbit}, buffer: {durability: disk}}
  workloads: [{name: w, type: produce, on: s, period: 5s}]
  timeline: [{at: 30s, group: gw, outage: true, for: 1m}, {at: 2m, group: g, profile: slow}]
  duration: 2m30s
  expect: [{validator: gate-follows-link, group: s, within: 30s}]
`))
	f.Add([]byte("apiVersion: edgefault.io/v1alpha1\nkind: Fleet\nspec:\n  sites:\n  - name: s\n    gateway: {name: gw, uplink: {rate: 5mbps?}}\n"))
	f.Add([]byte("kind: Scenario\nspec: {duration: 1h, timeline: [{at: 2h, group: all, outage: true}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func() error{
			func() error { _, err := ParseScenario("f.yaml", data); return err },
			func() error { _, err := ParseFleet("f.yaml", data); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- parse() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(3 * time.Second):
				t.Fatalf("parsing took over 3 s: %q", data)
			}
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("an error that names no file and line: %v", err)
			}
		}
	})
}
