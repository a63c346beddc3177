package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
)

// seamProvider is a provider written against clusters alone: it says what
// it models in its own words and counts what the harness asks of it,
// passing the work to the provider it wraps. That a run passes through it
// shows the harness needs nothing beyond the seam.
type seamProvider struct {
	clusters.Provider
	info clusters.Info
	mu   sync.Mutex
	ups  int
	asks map[string]int
}

func (p *seamProvider) Name() string        { return p.info.Name }
func (p *seamProvider) Info() clusters.Info { return p.info }

func (p *seamProvider) Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (clusters.Fleet, error) {
	p.count("up")
	f, err := p.Provider.Up(ctx, name, spec)
	if err != nil {
		return nil, err
	}
	return &seamFleet{Fleet: f, p: p}, nil
}

func (p *seamProvider) count(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asks[what]++
}

func (p *seamProvider) asked(what string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asks[what]
}

type seamFleet struct {
	clusters.Fleet
	p *seamProvider
}

func (f *seamFleet) Provider() string { return f.p.info.Name }

func (f *seamFleet) StartCommand(ctx context.Context, member string, c clusters.Command) (clusters.Process, error) {
	f.p.count("start")
	return f.Fleet.StartCommand(ctx, member, c)
}

func (f *seamFleet) LinkShaper(ctx context.Context) (clusters.LinkShaper, error) {
	sh, err := f.Fleet.LinkShaper(ctx)
	return &seamShaper{LinkShaper: sh, p: f.p}, err
}

func (f *seamFleet) Collect(ctx context.Context, dir string) error {
	f.p.count("collect")
	return f.Fleet.Collect(ctx, dir)
}

type seamShaper struct {
	clusters.LinkShaper
	p *seamProvider
}

func (s *seamShaper) Apply(ctx context.Context, member string, imp impair.Impairment) error {
	s.p.count("shape " + member)
	return s.LinkShaper.Apply(ctx, member, imp)
}

var _ = Describe("the providers seam", func() {
	inner := func() clusters.Provider {
		GinkgoHelper()
		// No control planes: the minimal scenario does not need them,
		// and the provider says so.
		p, err := netns.NewProvider(netns.WithHelper(edgeguard))
		Expect(err).NotTo(HaveOccurred())
		return p
	}
	minimal := func() *scenarios.Scenario {
		GinkgoHelper()
		sc, err := scenarios.LoadScenarioFile("testdata/minimal.yaml")
		Expect(err).NotTo(HaveOccurred())
		return sc
	}

	It("plays a scenario on a provider the harness knows only through clusters", func(ctx SpecContext) {
		p := &seamProvider{Provider: inner(), asks: map[string]int{},
			info: clusters.Info{Name: "seamtest", Commands: true, Gateways: true}}
		reports := GinkgoT().TempDir()
		res := edgetest.Run(ctx, minimal(), edgetest.WithProvider(p), edgetest.WithEdgeguard(edgeguard), edgetest.WithReports(reports))
		Expect(res).To(edgetest.Pass())
		Expect(res.Provider).To(Equal("seamtest"))
		Expect(p.asked("up")).To(Equal(1))
		// The cloud's three services, the runtime on the node, the
		// workload: all through StartCommand.
		Expect(p.asked("start")).To(BeNumerically(">=", 5))
		// The outage, and its restore to the uplink's own profile.
		Expect(p.asked("shape site-gw")).To(Equal(2))
		Expect(p.asked("collect")).To(BeNumerically(">=", 1))
		// What the members wrote was collected next to the report.
		runtime, err := os.Stat(filepath.Join(reports, "minimal", "evidence", "site-1-runtime.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(runtime.Size()).To(BeNumerically(">", 0))
		Expect(filepath.Join(reports, "minimal", "logs", "site-1-runtime.log")).To(BeAnExistingFile())
		// Nothing is left: the run took its fleet down.
		names, err := p.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(names).NotTo(ContainElement(HavePrefix("ef-minimal")))
	})

	It("refuses, before anything starts, a scenario the provider cannot model, and names the reason", func(ctx SpecContext) {
		p := &seamProvider{Provider: inner(), asks: map[string]int{},
			info: clusters.Info{Name: "uplinks-only", Commands: true, ControlPlanes: true}}
		sc, err := scenarios.Builtin("factory")
		Expect(err).NotTo(HaveOccurred())
		res := harness.Run(ctx, sc, harness.RunOptions{Provider: p, Edgeguard: edgeguard, Reports: GinkgoT().TempDir()})
		Expect(res.Pass).To(BeFalse())
		Expect(res.Error).To(And(ContainSubstring("provider uplinks-only"), ContainSubstring("gateway"), ContainSubstring("netns")))
		Expect(p.asked("up")).To(BeZero(), "the fleet was brought up before the scenario was refused")
	})
})
