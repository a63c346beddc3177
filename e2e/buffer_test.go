package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

// The store-and-forward buffer with real processes on a shaped fleet:
// edgeguard serve (gate + buffer) on a node, the sample producer beside it,
// edgeguard sink in the cloud. The producer's log of acknowledgements is
// compared with what the sink stored.
var _ = Describe("the store-and-forward buffer", Ordered, func() {
	var (
		ctx   = context.Background()
		f     *netns.Fleet
		cloud *harness.Cloud
		sh    *shaper.Shaper
	)
	BeforeAll(func() {
		f, cloud, sh = runtimeFleet("eb", []scenarios.Site{{
			Name: "shop", Gateway: &scenarios.Gateway{Name: "shop-gw", Uplink: &scenarios.LinkProfile{Rate: scenarios.SameRate("20mbit"), Delay: "10ms"}},
			Nodes: []scenarios.Node{{Name: "shop-pos"}, {Name: "shop-2"}},
		}})
	})

	// acknowledged seq -> the content hash the receipt gave
	acked := func(path string) map[uint64]string {
		evs, err := events.Read(path)
		Expect(err).NotTo(HaveOccurred())
		out := map[uint64]string{}
		for _, e := range evs {
			if e.Event == "acked" {
				out[uint64(e.Fields["seq"].(float64))], _ = e.Fields["hash"].(string)
			}
		}
		return out
	}
	stream := func(node, s string) record.StreamSummary {
		GinkgoHelper()
		sum, err := cloud.Streams(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, st := range sum {
			if st.Node == node && st.Stream == s {
				return st
			}
		}
		return record.StreamSummary{}
	}
	// every acknowledged record is at the sink, exactly once, in order.
	deliveredExactlyOnce := func(node, s string, ack map[uint64]string) record.StreamSummary {
		GinkgoHelper()
		st := stream(node, s)
		var maxAck uint64
		for seq := range ack {
			maxAck = max(maxAck, seq)
		}
		Expect(len(ack)).To(BeNumerically(">", 0))
		Expect(st.Gaps).To(BeEmpty(), "records missing at the sink: %+v", st)
		Expect(st.First).To(Equal(uint64(1)))
		Expect(st.Last).To(BeNumerically(">=", maxAck), "acknowledged records missing at the sink: %+v", st)
		// Distinct keys 1..Last with no gaps: every acknowledged seq is
		// there once; the sink keeps a key once by construction and counts
		// the resends it refused.
		Expect(st.Count).To(Equal(st.Last))
		Expect(st.OutOfOrder).To(BeZero(), "arrived out of order: %+v", st)
		// ... and holds under each key the content that was acknowledged.
		held, err := cloud.Hashes(ctx, []record.StreamSummary{st})
		Expect(err).NotTo(HaveOccurred())
		for seq, h := range ack {
			Expect(h).To(HaveLen(64), "acknowledged seq %d without a content hash", seq)
			Expect(held[record.Key(node, st.Epoch, s, seq)]).To(Equal(h), "seq %d: the sink holds other content than was acknowledged", seq)
		}
		return st
	}
	serve := func(node, db string, extra ...string) *harness.Gate {
		GinkgoHelper()
		g, err := harness.StartGate(ctx, f, edgeguard, node, cloud, append([]string{"--min-download=5mbit", "--interval=1s", "--full-duration=2s",
			"--buffer=" + db, "--sink=" + cloud.SinkURL}, extra...)...)
		Expect(err).NotTo(HaveOccurred())
		return g
	}
	bufferStats := func(g *harness.Gate) buffer.Stats {
		var s buffer.Stats
		_ = g.Get(ctx, "/v1/buffer", &s)
		return s
	}

	It("takes batches at the fleet's sink only with the node's own token", func() {
		pos, err := f.NetnsMember("shop-pos")
		Expect(err).NotTo(HaveOccurred())
		hc := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(pos.Namespace)}, Timeout: 5 * time.Second}
		// What a forger on the shop's LAN would post: keys of a real
		// stream (the epoch is public at /v1/streams).
		forged, _ := json.Marshal(record.Batch{Records: []record.Record{{Key: record.Key("shop-pos", "e0", "pos", 1), Node: "shop-pos", Epoch: "e0", Stream: "pos", Seq: 1, Payload: []byte("forged")}}})
		post := func(token string) int {
			GinkgoHelper()
			req, _ := http.NewRequest(http.MethodPost, cloud.SinkURL+"/v1/batches", bytes.NewReader(forged))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		Expect(post("")).To(Equal(http.StatusUnauthorized))
		Expect(post("0123456789abcdef0123456789abcdef")).To(Equal(http.StatusUnauthorized))
		Expect(post(cloud.SinkToken("shop-2"))).To(Equal(http.StatusForbidden), "one node's token delivered another's records")
		Expect(stream("shop-pos", "pos").Count).To(BeZero())
	})

	It("keeps everything through a 30 s uplink cut and delivers it exactly once, in order, after", func() {
		db := filepath.Join(f.Dir(), "shop-pos", "buffer.db")
		g := serve("shop-pos", db)
		DeferCleanup(g.Stop)
		_, err := g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		pe := filepath.Join(f.Dir(), "evidence", "shop-pos-producer.jsonl")
		prod, err := f.Start(ctx, "shop-pos", "producer", []string{edgeguard, "workload", "produce", "--node=shop-pos", "--to=" + g.URL(), "--stream=pos", "--period=50ms", "--events=" + pe})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = prod.Stop(2 * time.Second) })
		Eventually(func() uint64 { return stream("shop-pos", "pos").Count }).WithTimeout(10 * time.Second).Should(BeNumerically(">", 20))

		gw, err := f.Target("shop-gw")
		Expect(err).NotTo(HaveOccurred())
		Expect(sh.Apply(ctx, gw, shaper.Impairment{Outage: true})).To(Succeed())
		restored := false
		DeferCleanup(func() {
			if !restored {
				_ = sh.Clear(ctx, gw)
			}
		})
		_, err = g.WaitState(ctx, wire.Unknown, 15*time.Second)
		Expect(err).NotTo(HaveOccurred())
		atCut := stream("shop-pos", "pos").Count
		time.Sleep(25 * time.Second)
		backlog := bufferStats(g)
		GinkgoWriter.Printf("after the cut: backlog %d records, %d bytes, oldest %s ago\n", backlog.Records, backlog.Bytes, time.Since(backlog.Oldest).Round(time.Second))
		Expect(backlog.Records).To(BeNumerically(">", 300), "the producer kept appending during the cut")
		Expect(stream("shop-pos", "pos").Count).To(Equal(atCut), "the sink received records through a cut uplink")

		Expect(sh.Apply(ctx, gw, shaper.Impairment{Rate: 20 * shaper.Mbit, Delay: 10 * time.Millisecond})).To(Succeed())
		restored = true
		_, err = g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		time.Sleep(2 * time.Second)
		Expect(prod.Stop(5 * time.Second)).To(Succeed())
		Eventually(func() int64 { return bufferStats(g).Records }).WithTimeout(60*time.Second).Should(BeZero(), "the backlog did not drain")
		st := deliveredExactlyOnce("shop-pos", "pos", acked(pe))
		GinkgoWriter.Printf("sink: %d records, %d resends refused\n", st.Count, st.Duplicates)
		Expect(bufferStats(g).Dropped).To(BeZero())
	})

	It("loses no acknowledged record when edgeguard is killed with SIGKILL 20 times mid-stream", func() {
		db := filepath.Join(f.Dir(), "shop-2", "buffer.db")
		// Probes alone decide here, so each restart forwards within a
		// second and kills land while it does.
		flags := []string{"--no-full-test", "--interval=500ms"}
		g := serve("shop-2", db, flags...)
		_, err := g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		pe := filepath.Join(f.Dir(), "evidence", "shop-2-producer.jsonl")
		prod, err := f.Start(ctx, "shop-2", "producer", []string{edgeguard, "workload", "produce", "--node=shop-2", "--to=" + g.URL(), "--stream=telemetry", "--period=10ms", "--events=" + pe})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = prod.Stop(2 * time.Second) })
		for i := 0; i < 20; i++ {
			time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
			Expect(g.Proc.Signal(syscall.SIGKILL)).To(Succeed())
			_ = g.Proc.Stop(time.Second) // reaps and forgets it
			g = serve("shop-2", db, flags...)
		}
		DeferCleanup(g.Stop)
		_, err = g.WaitState(ctx, wire.Open, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(prod.Stop(5 * time.Second)).To(Succeed())
		Eventually(func() int64 { return bufferStats(g).Records }).WithTimeout(60*time.Second).Should(BeZero(), "the backlog did not drain")
		ack := acked(pe)
		st := deliveredExactlyOnce("shop-2", "telemetry", ack)
		GinkgoWriter.Printf("20 kills: %d acknowledged, %d at the sink, %d resends refused\n", len(ack), st.Count, st.Duplicates)
		// Some kill landed between the sink's commit and the local delete:
		// the resend was refused, not stored twice.
		Expect(st.Duplicates).To(BeNumerically(">", 0), "no kill hit the window the idempotency keys are for")
	})
})
