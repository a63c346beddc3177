package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/shaper"
	bolt "go.etcd.io/bbolt"
)

// fsyncLatency is the median time of a 4 KiB write + fdatasync in dir.
func fsyncLatency(dir string) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-")
	check(err)
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var d []time.Duration
	for i := 0; i < 200; i++ {
		t := time.Now()
		_, err := f.WriteAt(buf, int64(i%16)*4096)
		check(err)
		check(f.Sync())
		d = append(d, time.Since(t))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// appendRate appends n 256-byte records from producers goroutines, each
// keeping up to inflight appends outstanding, and returns records/s.
func appendRate(b *buffer.Buffer, producers, inflight, n int) float64 {
	payload := bytes.Repeat([]byte("r"), 256)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < producers*inflight; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			stream := fmt.Sprintf("s%d", p%producers)
			for next.Add(1) <= int64(n) {
				_, err := b.Append(context.Background(), buffer.Input{Stream: stream, Payload: payload})
				check(err)
			}
		}(p)
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// boltPerRecord is the baseline: one bbolt transaction (two fsyncs) per
// record, from producers goroutines.
func boltPerRecord(path string, producers, n int) float64 {
	db, err := bolt.Open(path, 0o600, nil)
	check(err)
	defer db.Close()
	payload := bytes.Repeat([]byte("r"), 256)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				check(db.Update(func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("q"))
					if err != nil {
						return err
					}
					return bk.Put(u64key(uint64(i)), payload)
				}))
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func u64key(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / 1e6
}

func (b *bench) buffer() {
	fmt.Println("== Store-and-forward buffer: durable appends of 256-byte records (targets: >= 20 000/s with 8 producers, >= 10x one bbolt transaction per record), flush after an outage on a 5mbit link (85-105% of what it may use), heap with a 1 M-record backlog (bounded)")
	dir, err := os.MkdirTemp("/var/tmp", "edgefault-bench-buffer-")
	check(err)
	defer os.RemoveAll(dir)
	fmt.Printf("   disk: 4 KiB write + fdatasync, median %s (a bbolt commit syncs twice)\n", fsyncLatency(dir).Round(time.Microsecond))
	tw := table("producers\tin flight each\tbaseline: a bbolt tx per record\tbuffer: group commit\tspeed-up\tmeets target\t")
	for _, prod := range []int{1, 8} {
		n, nb := 40000, 2000
		if b.quick {
			n = 15000
		}
		base := boltPerRecord(filepath.Join(dir, fmt.Sprintf("base%d.db", prod)), prod, nb)
		buf, err := buffer.Open(filepath.Join(dir, fmt.Sprintf("buf%d.db", prod)), buffer.Options{Node: "bench", Logger: discard()})
		check(err)
		rate := appendRate(buf, prod, 64, n)
		st := buf.Stats()
		check(buf.Close())
		ok := "-"
		if prod == 8 {
			ok = pass(rate >= 20000 && rate >= 10*base)
		}
		fmt.Fprintf(tw, "%d\t64\t%.0f/s\t%.0f/s (%.0f records a commit)\t%.1fx\t%s\t\n", prod, base, rate, float64(st.Appended)/float64(st.Commits), rate/base, ok)
	}
	tw.Flush()

	// Heap against the backlog.
	total := 1_000_000
	if b.quick {
		total = 200_000
	}
	buf, err := buffer.Open(filepath.Join(dir, "backlog.db"), buffer.Options{Node: "bench", MaxBytes: 2_000_000_000, MaxRecords: int64(total), Logger: discard()})
	check(err)
	h0 := heapMB()
	appendRate(buf, 8, 64, total/10)
	h1 := heapMB()
	appendRate(buf, 8, 64, total-total/10)
	h2 := heapMB()
	st := buf.Stats()
	check(buf.Close())
	tw = table("backlog\tdatabase bytes\tGo heap in use\tmeets target\t")
	fmt.Fprintf(tw, "empty\t-\t%.1f MB\t\t\n", h0)
	fmt.Fprintf(tw, "%d\t%.0f MB\t%.1f MB\t\t\n", total/10, float64(st.Bytes)/10/1e6, h1)
	fmt.Fprintf(tw, "%d\t%.0f MB\t%.1f MB\t%s\t\n", st.Records, float64(st.Bytes)/1e6, h2, pass(h2 < 2*h1+8))
	tw.Flush()

	b.flush()
}

// flush measures how fast a backlog drains after an outage over a 5mbit
// node link, against what the buffer may use (its share of the capacity
// the gate measured).
func (b *bench) flush() {
	eg := edgeguardBin()
	ctx := context.Background()
	f, cloud, sh, t, node, done := cloudNode("bf", eg)
	defer done()
	check(sh.Apply(ctx, t, shaper.Impairment{Outage: true}))
	g, err := harness.StartGate(ctx, f, eg, "n1", cloud, "--min-download=1mbit", "--buffer="+filepath.Join(f.Dir(), "n1.db"), "--sink="+cloud.SinkURL)
	check(err)
	defer g.Stop()
	// A backlog of 4 MB while the link is out.
	hc := &http.Client{Transport: &http.Transport{DialContext: nsdo.DialContext(node.Namespace)}}
	payload := bytes.Repeat([]byte("f"), 4000)
	for i := 0; i < 100; i++ {
		var batch []buffer.Input
		for k := 0; k < 10; k++ {
			batch = append(batch, buffer.Input{Stream: "flush", Payload: payload})
		}
		body, _ := json.Marshal(batch)
		resp, err := hc.Post(g.URL()+"/v1/records", "application/json", bytes.NewReader(body))
		check(err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			check(fmt.Errorf("building the backlog: %s", resp.Status))
		}
	}
	var before buffer.Stats
	check(g.Get(ctx, "/v1/buffer", &before))
	check(sh.Apply(ctx, t, shaper.Impairment{Rate: 5 * shaper.Mbit}))
	st, err := g.WaitState(ctx, wire.Open, 90*time.Second)
	check(err)
	start := time.Now()
	var now buffer.Stats
	for {
		check(g.Get(ctx, "/v1/buffer", &now))
		if now.Records == 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			check(fmt.Errorf("backlog not drained: %+v", now))
		}
		time.Sleep(50 * time.Millisecond)
	}
	el := time.Since(start)
	rate := float64(before.Bytes) * 8 / el.Seconds()
	allowed := 0.8 * st.CapacityBps
	tw := table("link\tbacklog\tgate capacity\tallowed (80%)\tdrained in\tflush rate\tshare of allowed\tmeets target\t")
	fmt.Fprintf(tw, "5mbit\t%.1f MB\t%.2f Mbit/s\t%.2f Mbit/s\t%s\t%.2f Mbit/s\t%.0f%%\t%s\t\n", float64(before.Bytes)/1e6, st.CapacityBps/1e6, allowed/1e6, el.Round(10*time.Millisecond), rate/1e6, 100*rate/allowed, pass(rate >= 0.85*allowed && rate <= 1.05*allowed))
	tw.Flush()
}
