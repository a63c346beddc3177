// Package edgetest lets a Ginkgo/Gomega suite play edgefault scenarios
// against an edge app and judge them: Run plays a scenario on a fresh
// embedded fleet inside a spec, and the matchers read the result.
//
//	var _ = Describe("my app on a truck", func() {
//		It("survives the vehicle scenario", func(ctx SpecContext) {
//			sc, err := scenarios.LoadScenarioFile("testdata/truck.yaml")
//			Expect(err).NotTo(HaveOccurred())
//			res := edgetest.Run(ctx, sc)
//			Expect(res).To(edgetest.Pass())
//			Expect(res).To(edgetest.PassValidator("delivered-exactly-once"))
//		})
//	})
//
// The suite needs root, as edgefault itself does; the control-plane
// binaries cached (edgefault setup); and the edgeguard binary, found at
// $EDGEGUARD, next to the test binary or on PATH (or named with
// WithEdgeguard). edgeguard also runs the shaper's helper processes, so
// the suite needs nothing else.
package edgetest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
)

// Option changes how Run plays a scenario.
type Option func(*harness.RunOptions)

// WithTimeScale overrides the scenario's time scale.
func WithTimeScale(s float64) Option { return func(o *harness.RunOptions) { o.TimeScale = s } }

// WithReports writes the run's evidence under dir (default: the spec's
// temporary directory).
func WithReports(dir string) Option { return func(o *harness.RunOptions) { o.Reports = dir } }

// WithEdgeguard names the edgeguard binary (default: $EDGEGUARD, next to
// the test binary, or on PATH).
func WithEdgeguard(path string) Option { return func(o *harness.RunOptions) { o.Edgeguard = path } }

// WithProvider plays the scenario on p instead of a fresh embedded-fleet
// provider.
func WithProvider(p clusters.Provider) Option { return func(o *harness.RunOptions) { o.Provider = p } }

// WithOptions sets any other run option.
func WithOptions(f func(*harness.RunOptions)) Option { return Option(f) }

// Run plays sc on a fresh embedded fleet with real control planes and
// returns the result. A run that could not be played (no root, control
// plane binaries missing: run edgefault setup) or broke half-way is
// returned with Error set, which every matcher reports.
func Run(ctx context.Context, sc *scenarios.Scenario, opts ...Option) harness.ScenarioResult {
	ginkgo.GinkgoHelper()
	o := harness.RunOptions{Reports: ginkgo.GinkgoT().TempDir(), Log: logger()}
	for _, f := range opts {
		f(&o)
	}
	if o.Edgeguard == "" {
		eg, err := harness.FindEdgeguard()
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "edgetest runs the runtime and the shaper's helpers from edgeguard")
		o.Edgeguard = eg
	}
	if o.Provider == nil {
		o.Provider = Provider(o.Edgeguard)
	}
	res := harness.Run(ctx, sc, o)
	ginkgo.AddReportEntry(sc.Metadata.Name, Describe(res))
	return res
}

// Provider is the embedded fleet's provider Run uses: sites with real
// control planes (edgefault setup must have cached them), helpers run from
// edgeguard (this test binary does not know how to be one).
func Provider(edgeguard string) clusters.Provider {
	ginkgo.GinkgoHelper()
	c := k8sbin.Cache{Dir: k8sbin.DefaultDir()}
	for _, comp := range k8sbin.Components() {
		_, err := c.Lookup(comp.Name)
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "the embedded fleet's sites run real control planes")
	}
	p, err := netns.NewProvider(netns.WithLogger(logger()), netns.WithControlPlanes(c), netns.WithHelper(edgeguard))
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "the embedded fleet needs root")
	return p
}

// Describe is a result in a few lines: each verdict and what was seen.
func Describe(r harness.ScenarioResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (time scale %g, %s): pass=%v, wall %v\n", r.Name, r.TimeScale, r.Runtime, r.Pass, r.Duration.Round(1e8))
	if r.Error != "" {
		fmt.Fprintf(&b, "  run error: %s\n", r.Error)
	}
	for _, v := range r.Verdicts {
		mark := "pass"
		if !v.Pass {
			mark = "FAIL"
		}
		if len(v.Lines) <= 1 {
			fmt.Fprintf(&b, "  %s %s %s: %s\n", mark, v.Validator, v.Group, v.Summary)
			continue
		}
		fmt.Fprintf(&b, "  %s %s %s:\n", mark, v.Validator, v.Group)
		for _, l := range v.Lines {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	return b.String()
}

// Pass succeeds if the scenario ran and every expectation passed.
func Pass() types.GomegaMatcher {
	return &matcher{what: "the scenario to pass", ok: func(r harness.ScenarioResult) (bool, error) { return r.Pass, nil }}
}

// PassValidator succeeds if the scenario ran and every verdict of the
// named validator passed.
func PassValidator(name string) types.GomegaMatcher {
	return &matcher{what: "validator " + name + " to pass", ok: func(r harness.ScenarioResult) (bool, error) {
		pass, found := verdicts(r, name)
		if !found {
			return false, fmt.Errorf("the scenario has no %s expectation (run error: %q)", name, r.Error)
		}
		return r.Error == "" && pass, nil
	}}
}

// FailValidator succeeds if the scenario ran and a verdict of the named
// validator failed: what a negative control expects.
func FailValidator(name string) types.GomegaMatcher {
	return &matcher{what: "validator " + name + " to fail", ok: func(r harness.ScenarioResult) (bool, error) {
		pass, found := verdicts(r, name)
		if !found {
			return false, fmt.Errorf("the scenario has no %s expectation (run error: %q)", name, r.Error)
		}
		return r.Error == "" && !pass, nil
	}}
}

type matcher struct {
	what string
	ok   func(harness.ScenarioResult) (bool, error)
}

func (m *matcher) result(actual any) (harness.ScenarioResult, error) {
	switch r := actual.(type) {
	case harness.ScenarioResult:
		return r, nil
	case *harness.ScenarioResult:
		return *r, nil
	}
	return harness.ScenarioResult{}, fmt.Errorf("edgetest matchers take a harness.ScenarioResult, not %T", actual)
}

// Match implements types.GomegaMatcher.
func (m *matcher) Match(actual any) (bool, error) {
	r, err := m.result(actual)
	if err != nil {
		return false, err
	}
	return m.ok(r)
}

// FailureMessage implements types.GomegaMatcher.
func (m *matcher) FailureMessage(actual any) string {
	r, _ := m.result(actual)
	return "Expected " + m.what + ":\n" + Describe(r)
}

// NegatedFailureMessage implements types.GomegaMatcher.
func (m *matcher) NegatedFailureMessage(actual any) string {
	r, _ := m.result(actual)
	return "Expected not " + m.what + ":\n" + Describe(r)
}

func verdicts(r harness.ScenarioResult, name string) (pass, found bool) {
	pass = true
	for _, v := range r.Verdicts {
		if v.Validator == name {
			found = true
			pass = pass && v.Pass
		}
	}
	return pass, found
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(ginkgo.GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
