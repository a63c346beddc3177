package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// The speed gate on real shaped links: edgeguard serve on a node of an
// embedded fleet, measuring against edgeguard speedserver in the cloud, the
// sample workload fetching from edgeguard content. Thresholds: close below
// 20mbit, reopen at 24mbit; the nodes' links run at 100mbit (a realistic
// LAN, and full speed tests at veth speed would starve the rest of the
// test run of CPU) and are throttled to 5mbit.
var _ = Describe("the speed gate", Ordered, func() {
	var (
		ctx   = context.Background()
		f     *netns.Fleet
		cloud *harness.Cloud
		sh    *shaper.Shaper
		// Short full tests and probe intervals keep the suite quick; the
		// benchmark runs the defaults.
		gateFlags = []string{"--min-download=20mbit", "--max-latency=500ms", "--interval=1s", "--full-duration=2s"}
	)
	// Detection target: 5 s from a drop to closed; tests allow 3x.
	const closeBound = 15 * time.Second

	throttle := func(node string) {
		GinkgoHelper()
		t, err := f.Target(node)
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, t, shaper.Impairment{Rate: 5 * shaper.Mbit})).To(Succeed())
	}
	restore := func(node string) {
		GinkgoHelper()
		t, err := f.Target(node)
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, t, shaper.Impairment{Rate: 100 * shaper.Mbit})).To(Succeed())
	}
	eventsOf := func(path, event string, after time.Time) []wire.Event {
		evs, _ := events.Read(path)
		var out []wire.Event
		for _, e := range evs {
			if e.Event == event && e.Time.After(after) {
				out = append(out, e)
			}
		}
		return out
	}

	BeforeAll(func() {
		f, cloud, sh = runtimeFleet("eg", []scenarios.Site{{
			Name: "store", Gateway: &scenarios.Gateway{Name: "store-gw"},
			Nodes: []scenarios.Node{{Name: "store-pos"}, {Name: "store-2"}, {Name: "store-3"}},
		}})
		for _, n := range []string{"store-pos", "store-2", "store-3"} {
			restore(n)
		}
	})

	It("closes when the node is throttled below the threshold, stops the workload, and reopens on restore", func() {
		g, err := harness.StartGate(ctx, f, edgeguard, "store-pos", cloud, gateFlags...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(g.Stop)
		st, err := g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.CapacityBps).To(BeNumerically(">", 24e6), "the full test measured the unshaped link")

		wl := f.Dir() + "/evidence/store-pos-workload.jsonl"
		w, err := f.Start(ctx, "store-pos", "workload", []string{edgeguard, "workload", "fetch", "--node=store-pos",
			"--gate=" + g.URL(), "--content=" + cloud.ContentURL, "--period=300ms", "--events=" + wl})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = w.Stop(2 * time.Second) })
		Eventually(func() int { return len(eventsOf(wl, "fetched", time.Time{})) }).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 3))

		throttle("store-pos")
		dropped := time.Now()
		st, err = g.WaitState(ctx, wire.Closed, closeBound)
		Expect(err).NotTo(HaveOccurred())
		closedAt := st.Since
		GinkgoWriter.Printf("gate closed %s after the drop: %s\n", closedAt.Sub(dropped).Round(time.Millisecond), st.Reason)
		Expect(st.Open).To(BeFalse())
		Expect(st.Reason).To(ContainSubstring("below 20mbit"))
		Eventually(func() int { return len(eventsOf(wl, "paused", dropped)) }).WithTimeout(5 * time.Second).Should(Equal(1))

		// While closed: nothing fetched, nothing served to this node.
		time.Sleep(4 * time.Second)
		quiet := closedAt.Add(time.Second)
		Expect(eventsOf(wl, "fetched", quiet)).To(BeEmpty(), "the workload fetched while the gate was closed")
		var served []wire.Event
		for _, e := range eventsOf(cloud.ContentEvents, "served", quiet) {
			if e.Fields["client"] == "store-pos" {
				served = append(served, e)
			}
		}
		Expect(served).To(BeEmpty(), "the content server served store-pos while its gate was closed")
		Expect(g.Status(ctx)).To(HaveField("State", wire.Closed))

		restore("store-pos")
		restored := time.Now()
		st, err = g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("gate reopened %s after the restore: %s\n", st.Since.Sub(restored).Round(time.Millisecond), st.Reason)
		Eventually(func() int { return len(eventsOf(wl, "fetched", restored)) }).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 2))
		Expect(eventsOf(wl, "resumed", restored)).To(HaveLen(1))
		Expect(eventsOf(g.Events, "closed", dropped)).To(HaveLen(1), "one close, no flapping")
	})

	It("holds an init-mode wait until the link is restored", func() {
		throttle("store-2")
		restored := false
		DeferCleanup(func() {
			if !restored {
				restore("store-2")
			}
		})
		// A short timeout on a slow link: exit code 2, said clearly.
		var out bytes.Buffer
		err := f.Exec(ctx, "store-2", append([]string{edgeguard, "gate", "wait", "--server=" + cloud.SpeedURL, "--timeout=4s"}, gateFlags...), nil, &out, &out)
		var ee *exec.ExitError
		Expect(errors.As(err, &ee)).To(BeTrue(), "gate wait on a throttled link: %v\n%s", err, out.String())
		Expect(ee.ExitCode()).To(Equal(2), out.String())
		Expect(out.String()).To(ContainSubstring("gate still closed after 4s"))

		w, err := f.Start(ctx, "store-2", "gate-wait", append([]string{edgeguard, "gate", "wait", "--server=" + cloud.SpeedURL, "--timeout=2m"}, gateFlags...))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = w.Stop(time.Second) })
		wctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		Expect(w.Wait(wctx)).To(MatchError(context.DeadlineExceeded), "gate wait returned while the link was throttled")
		cancel()

		restore("store-2")
		restored = true
		start := time.Now()
		wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		Expect(w.Wait(wctx)).To(Succeed(), "gate wait did not exit 0 after the restore")
		GinkgoWriter.Printf("gate wait returned %s after the restore\n", time.Since(start).Round(time.Millisecond))
		log, _ := os.ReadFile(w.Log)
		Expect(string(log)).To(ContainSubstring("gate open after"))
	})

	It("is unknown, never open, while the site's uplink is cut, and reopens after", func() {
		g, err := harness.StartGate(ctx, f, edgeguard, "store-3", cloud, gateFlags...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(g.Stop)
		_, err = g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		gw, err := f.Target("store-gw")
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, gw, shaper.Impairment{Outage: true})).To(Succeed())
		cut := time.Now()
		restored := false
		DeferCleanup(func() {
			if !restored {
				_ = sh.Clear(ctx, gw)
			}
		})
		st, err := g.WaitState(ctx, wire.Unknown, closeBound)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("gate unknown %s after the cut: %s\n", st.Since.Sub(cut).Round(time.Millisecond), st.Reason)
		Expect(st.Open).To(BeFalse())
		// A probe in flight times out; one started after the gateway has
		// noticed its uplink is down gets its unreachable answer at once.
		Expect(st.Reason).To(Or(ContainSubstring("no answer"), ContainSubstring("no route to host")))
		Consistently(func() bool { s, _ := g.Status(ctx); return s.Open }).WithTimeout(3 * time.Second).Should(BeFalse())
		Expect(sh.Clear(ctx, gw)).To(Succeed())
		restored = true
		_, err = g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("stays unknown, never open, and says why, when the server cannot be measured",
		func(server func() string, why string) {
			g, err := harness.StartGate(ctx, f, edgeguard, "store-3", cloud, append(gateFlags, "--server="+server())...)
			Expect(err).NotTo(HaveOccurred())
			defer g.Stop()
			st, err := g.WaitState(ctx, wire.Unknown, 10*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Consistently(func() bool { s, _ := g.Status(ctx); return s.Open || s.State != wire.Unknown }).
				WithTimeout(3 * time.Second).Should(BeFalse())
			st, _ = g.Status(ctx)
			Expect(st.Measurements).NotTo(BeEmpty())
			Expect(st.Measurements[len(st.Measurements)-1].Reason).To(ContainSubstring(why))
			var out bytes.Buffer
			err = f.Exec(ctx, "store-3", []string{edgeguard, "gate", "check", "--from=" + g.URL()}, nil, &out, &out)
			var ee *exec.ExitError
			Expect(errors.As(err, &ee) && ee.ExitCode() == 2).To(BeTrue(), "gate check: %v %s", err, out.String())
			Expect(out.String()).To(ContainSubstring("gate unknown"))
			log, _ := os.ReadFile(g.Proc.LogPath())
			Expect(string(log)).To(And(ContainSubstring("gate probe failed"), ContainSubstring(why)))
		},
		// The later --server wins over the one StartGate sets.
		Entry("garbage: the content server answers instead", func() string { return strings.TrimSuffix(cloud.ContentURL, "/page") }, "not a speed-test server"),
		Entry("unreachable: nothing listens there", func() string { return strings.Replace(cloud.SpeedURL, ":8080", ":8099", 1) }, "connection refused"),
	)
})

var _ = Describe("edgeguard flags", func() {
	DescribeTable("bad flags are refused with a clear error",
		func(want string, args ...string) {
			var out bytes.Buffer
			cmd := exec.Command(edgeguard, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			Expect(errors.As(err, &ee)).To(BeTrue(), "edgeguard %v accepted: %s", args, out.String())
			Expect(ee.ExitCode()).To(Equal(1))
			Expect(out.String()).To(ContainSubstring(want))
		},
		Entry("threshold without unit", "has no unit", "serve", "--server=http://127.0.0.1:1", "--min-download=5"),
		Entry("ambiguous unit", "ambiguous", "serve", "--server=http://127.0.0.1:1", "--min-download=5mbps"),
		Entry("no threshold", "--min-download is required", "serve", "--server=http://127.0.0.1:1"),
		Entry("bad URL", "not an http(s) URL", "serve", "--server=100.64.0.1:8080", "--min-download=5mbit"),
		Entry("no server", "--server is required", "gate", "wait", "--min-download=5mbit"),
		Entry("negative budget", "negative", "serve", "--server=http://127.0.0.1:1", "--min-download=5mbit", "--probe-budget=-5kB/s"),
		Entry("negative budget share", "negative", "serve", "--server=http://127.0.0.1:1", "--min-download=5mbit", "--probe-budget=-2%"),
		Entry("budget without unit", "has no unit", "serve", "--server=http://127.0.0.1:1", "--min-download=5mbit", "--probe-budget=100"),
		Entry("negative timeout", "negative", "gate", "wait", "--from=http://127.0.0.1:1", "--timeout=-1s"),
		Entry("hysteresis without %", "no % sign", "serve", "--server=http://127.0.0.1:1", "--min-download=5mbit", "--hysteresis=20"),
		Entry("bad page size", "has no unit", "content", "--page-size=100"),
		Entry("workload without content", "--content", "workload", "fetch"),
	)
})
