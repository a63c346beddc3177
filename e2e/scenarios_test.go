package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// The built-in scenarios, played by the harness on the embedded fleet
// with real control planes and the real runtime, through the public
// Ginkgo helpers a user's own suite would use; then the negative controls:
// documented runtime settings that must make the matching validators fail.
var _ = Describe("the built-in scenarios", Ordered, func() {
	// A negative control runs at twice the scenario's own time scale: what
	// it must show (fetches before the gate confirms a restored link,
	// records lost with the runtime) does not depend on the outage's length.
	play := func(ctx SpecContext, name string, change func(*scenarios.RuntimeSpec)) harness.ScenarioResult {
		GinkgoHelper()
		sc, err := scenarios.Builtin(name)
		Expect(err).NotTo(HaveOccurred())
		scale := 0.0
		if change != nil {
			change(&sc.Spec.Runtime)
			scale = 2 * sc.Scale(0)
		}
		return edgetest.Run(ctx, sc, edgetest.WithTimeScale(scale), edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("x%d-", os.Getpid()%1000)
		}))
	}
	// playFile plays testdata/file at its own scale, its runtime changed
	// by change (if not nil).
	playFile := func(ctx SpecContext, file string, change func(*scenarios.RuntimeSpec)) harness.ScenarioResult {
		GinkgoHelper()
		sc, err := scenarios.LoadScenarioFile(filepath.Join("testdata", file))
		Expect(err).NotTo(HaveOccurred())
		if change != nil {
			change(&sc.Spec.Runtime)
		}
		return edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("t%d-", os.Getpid()%1000)
		}))
	}
	for _, name := range scenarios.Certified() {
		It("certifies "+name+" with the runtime", func(ctx SpecContext) {
			res := play(ctx, name, nil)
			Expect(res).To(edgetest.Pass())
			Expect(res.Nodes).NotTo(BeEmpty(), "the report has no samples to chart")
			// Delivery was judged by content, not only by sequence numbers.
			for _, v := range res.Verdicts {
				if v.Validator != "delivered-exactly-once" {
					continue
				}
				checked := 0.0
				for k, n := range v.Numbers {
					if strings.HasSuffix(k, ".contentChecked") {
						checked += n
					}
				}
				Expect(checked).To(BeNumerically(">", 0), "%s: no acknowledged record was compared by content: %v", v.Group, v.Numbers)
			}
		})
	}

	// regional-outage at a tenth of its size (make bench plays all of it),
	// and with the sink's ingest bounded far below what the six returning
	// stores send, so its admission must refuse and the forwarders must
	// come back: nothing lost or doubled, the sink within its limit.
	It("plays regional-outage at ten stores: a returning region is admitted at the sink's pace, refused batches come back, nothing is lost", func(ctx SpecContext) {
		src, err := scenarios.BuiltinSource("regional-outage")
		Expect(err).NotTo(HaveOccurred())
		// Twelve gates need no spread: ten stores return together.
		small := strings.NewReplacer("count: 40", "count: 4", "count: 20", "count: 2", "ingestRate: 24mbit", "ingestRate: 4mbit", "confirmSpread: 6s", "confirmSpread: 500ms").Replace(string(src))
		sc, err := scenarios.ParseScenario("regional-outage (ten stores)", []byte(small))
		Expect(err).NotTo(HaveOccurred())
		Expect(sc.Spec.Topology.Sites).To(HaveLen(10))
		Expect(sc.Spec.Runtime.Sink.IngestRate).To(Equal("4mbit"))
		Expect(sc.Spec.Runtime.Gate.ConfirmSpread.D()).To(Equal(500 * time.Millisecond))
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("r%d-", os.Getpid()%1000)
		}))
		Expect(res).To(edgetest.Pass())
		Expect(res.SitesSummary()).To(Equal("none (10 sites)"))
		Expect(res.FleetUp).To(BeNumerically(">", 0))
		Expect(res.Memory).NotTo(BeNil())
		Expect(res.Memory.Processes).To(BeNumerically(">=", 12+10+10+1), "runtimes, tills, journals and the cloud's servers at least")
		Expect(res.Memory.PSS).To(BeNumerically("<", res.Memory.RSS))
		var sink validators.Verdict
		for _, v := range res.Verdicts {
			if v.Validator == "sink-within-limit" {
				sink = v
			}
		}
		Expect(sink.Numbers["refused"]).To(BeNumerically(">", 0), "the sink never refused: its admission was not exercised (%s)", sink.Summary)
		Expect(sink.Numbers["backlogBytes"]).To(BeNumerically(">", 1e6), "the outage left no backlog to drain: %s", sink.Summary)
		// Over the validator's 2 s window: the rate, and one burst (512 KiB
		// at this rate) spread over it.
		Expect(sink.Numbers["peakBps"]).To(BeNumerically("<=", 1.05*(4e6+8*float64(512<<10)/2)), "the sink took more than its rate and burst: %s", sink.Summary)
	})

	// A link that follows a trace of the scenario's own, read beside its
	// file: each row is a window the validators judge and the report
	// draws, and the gate follows the rows. The car's disk fills while its
	// link is down: appends are refused with a clear error, nothing
	// acknowledged is lost, the runtime does not crash, and the disk is
	// gone with the fleet. In the dead spot the car's power goes: what the
	// buffer acknowledged survives the lost disk tail and is delivered.
	It("plays a trace on a link, row by row, fills a node's disk mid-outage and cuts its power", func(ctx SpecContext) {
		res := playFile(ctx, "trace.yaml", nil)
		Expect(res).To(edgetest.Pass())
		var rows []string
		for _, w := range res.Windows {
			if w.Target == "car-modem" {
				rows = append(rows, w.What)
				Expect(w.Group).To(Equal("car-modem"))
			}
		}
		Expect(rows).To(HaveLen(4), "one window a row: %v", rows)
		Expect(rows[1]).To(ContainSubstring("1600kbit down / 750kbit up"))
		Expect(rows[2]).To(Equal("outage"))
		Expect(rows[3]).To(ContainSubstring("loss 1%"))
		// The report's impairment strip draws each row in the car-modem lane.
		dir := GinkgoT().TempDir()
		paths, err := (&harness.Report{Scenarios: []harness.ScenarioResult{res}}).Write(dir)
		Expect(err).NotTo(HaveOccurred())
		html, err := os.ReadFile(paths[len(paths)-1])
		Expect(err).NotTo(HaveOccurred())
		for _, row := range rows {
			Expect(string(html)).To(ContainSubstring(row), "the strip lacks a row")
		}
		played, err := os.ReadFile(filepath.Join(res.Evidence, "car-modem-timeline.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(played)).To(ContainSubstring(`"trace-played"`))
		Expect(string(played)).To(ContainSubstring(`"skipped":0`))
		// The disk: full, the runtime's commits refused for it, freed.
		tl, err := os.ReadFile(filepath.Join(res.Evidence, "car-ecu-timeline.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(tl)).To(ContainSubstring(`"disk-full"`))
		Expect(string(tl)).To(ContainSubstring(`"disk-freed"`))
		rt, err := os.ReadFile(filepath.Join(res.Evidence, "car-ecu-runtime.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(rt)).To(ContainSubstring("no space left on device"), "the full disk refused nothing")
		// The power: off and on once, and the verdict says what survived.
		Expect(strings.Count(string(tl), `"power-off"`)).To(Equal(1))
		Expect(strings.Count(string(tl), `"power-on"`)).To(Equal(1))
		for _, v := range res.Verdicts {
			if v.Validator == "delivered-exactly-once" {
				Expect(v.Summary).To(ContainSubstring("car-ecu: its power was cut 1×: every acknowledged record survived"))
			}
		}
		mounts, err := os.ReadFile("/proc/self/mounts")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(mounts)).NotTo(ContainSubstring(fmt.Sprintf("t%d-", os.Getpid()%1000)), "the node's disk outlived its fleet")
	})

	// DNS fails across the end of an outage while IP works: the runtime
	// dials on the last good answer, its gate follows the link and its
	// buffer flushes; one without that fallback (the negative control)
	// delivers only once DNS answers again, past the flush's bound.
	It("keeps the gate following the link while the cloud's name does not resolve, and fails without the last good answer", func(ctx SpecContext) {
		res := playFile(ctx, "dns.yaml", nil)
		Expect(res).To(edgetest.Pass())
		rt, err := os.ReadFile(filepath.Join(res.Evidence, "van-ecu-runtime.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		// dns-fresh comes only when a connection is made after DNS is back.
		Expect(strings.Contains(string(rt), `"dns-stale"`)).To(BeTrue(), "the runtime never dialled on its last good answer (see %s)", res.Evidence)
		tl, err := os.ReadFile(filepath.Join(res.Evidence, "van-modem-timeline.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(tl)).To(ContainSubstring(`"dns-fault"`))
		Expect(string(tl)).To(ContainSubstring(`"dns-restored"`))

		res = playFile(ctx, "dns.yaml", func(rt *scenarios.RuntimeSpec) { rt.DNS.NoStale = true })
		Expect(res).To(edgetest.FailValidator("delivered-exactly-once"))
		for _, v := range res.Verdicts {
			if v.Validator == "delivered-exactly-once" {
				Expect(v.Summary).To(ContainSubstring("the buffer emptied"))
			}
		}
	})

	// The power loss's negative control: a buffer acknowledging before
	// fsync loses, with the power, what it acknowledged.
	It("fails delivered-exactly-once when a buffer acknowledging before fsync loses its power", func(ctx SpecContext) {
		res := playFile(ctx, "power.yaml", nil)
		Expect(res).To(edgetest.FailValidator("delivered-exactly-once"))
		for _, v := range res.Verdicts {
			if v.Validator == "delivered-exactly-once" {
				Expect(v.Summary).To(ContainSubstring("van-ecu: its power was cut 1× (first at"))
				Expect(v.Summary).To(ContainSubstring("acknowledged records were never delivered: an acknowledgement must mean on disk"))
				Expect(v.Evidence).NotTo(BeEmpty())
			}
		}
	})

	It("fails no-fetch-while-closed and delivered-exactly-once on the vehicle with the gate bypassed and the buffer in memory", func(ctx SpecContext) {
		res := play(ctx, "vehicle", func(rt *scenarios.RuntimeSpec) {
			rt.Gate.Mode = "bypass"
			rt.Buffer.Durability = "memory"
		})
		// The gate itself still follows the link: only what depends on
		// the settings fails.
		Expect(res).To(edgetest.PassValidator("gate-follows-link"))
		Expect(res).To(edgetest.FailValidator("no-fetch-while-closed"))
		Expect(res).To(edgetest.FailValidator("delivered-exactly-once"))
		for _, v := range res.Verdicts {
			if !v.Pass {
				Expect(v.Evidence).NotTo(BeEmpty(), "%s failed without quoting evidence", v.Validator)
			}
			if v.Validator == "delivered-exactly-once" {
				Expect(v.Summary).To(ContainSubstring("acknowledged and never delivered"))
			}
		}
	})

	It("fails routes-switched and node-tagged on the factory with failover off", func(ctx SpecContext) {
		res := play(ctx, "factory", func(rt *scenarios.RuntimeSpec) { rt.Failover.Enabled = false })
		Expect(res).To(edgetest.FailValidator("routes-switched"))
		Expect(res).To(edgetest.FailValidator("node-tagged"))
		// The buffer still holds A's data through the outage and flushes it.
		Expect(res).To(edgetest.PassValidator("delivered-exactly-once"))
	})

	It("refuses a bad scenario file with its file, line and what to do, before anything starts", func() {
		src, err := scenarios.BuiltinSource("factory")
		Expect(err).NotTo(HaveOccurred())
		bad := filepath.Join(GinkgoT().TempDir(), "bad.yaml")
		Expect(os.WriteFile(bad, []byte(strings.Replace(string(src), "group: factory-gw-a, outage", "group: factory-gw-c, outage", 1)), 0o644)).To(Succeed())
		out, err := run("run", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(MatchRegexp(`bad\.yaml:\d+: spec\.timeline\[0\]\.group: no group "factory-gw-c"`))
		Expect(out).NotTo(ContainSubstring("bringing up the fleet"))
		out, err = run("scenario", "check", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(`no group "factory-gw-c"`))
	})

	It("refuses an outage the gate cannot see at the scale asked, and says what scale works", func() {
		out, err := run("scenario", "check", "retail", "--time-scale", "1000")
		Expect(err).To(HaveOccurred())
		Expect(out).To(And(ContainSubstring("lasts 1.8s of real time at time scale 1000"), MatchRegexp(`run at time scale \d+ or less`)))
		out, err = run("run", "retail", "--time-scale", "1000", "--reports", GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
		Expect(out).NotTo(ContainSubstring("bringing up the fleet"))
	})

	It("starts a user's scenario with scenario init, checked, never over their file", func() {
		file := filepath.Join(GinkgoT().TempDir(), "mine.yaml")
		mustRun("scenario", "init", "--app", "/opt/agent -listen=:8000", "--port", "8000", "--cloud", "/opt/ingest", "--cloud-port", "9000", "-o", file)
		Expect(mustRun("scenario", "check", file)).To(ContainSubstring("ok (my-app"))
		sc, err := scenarios.LoadScenarioFile(file)
		Expect(err).NotTo(HaveOccurred())
		Expect(sc.Spec.Workloads).To(HaveLen(2))
		Expect(sc.Spec.Workloads[1].Command).To(Equal([]string{"/opt/agent", "-listen=:8000"}))
		out, err := run("scenario", "init", "--app", "/opt/agent", "-o", file)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("exists"))
		out, err = run("scenario", "init", "--app", "/opt/agent", "--port", "8080")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("speed-test server"))
	})
})
