package buffer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/units"
)

// link is a switchable uplink for unit tests (the e2e suite uses the real
// speed gate on a shaped link).
type link struct {
	mu   sync.Mutex
	open bool
	ch   chan struct{}
}

func newLink(open bool) *link { return &link{open: open, ch: make(chan struct{})} }
func (l *link) IsOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}
func (l *link) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ch
}
func (l *link) set(open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open = open
	close(l.ch)
	l.ch = make(chan struct{})
}

func openSink(t *testing.T) (*sink.Sink, *httptest.Server) {
	t.Helper()
	s, err := sink.Open(filepath.Join(t.TempDir(), "sink.db"), nil, sink.WithoutAuth())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	return s, srv
}

func drain(t *testing.T, b *buffer.Buffer, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.Stats().Records > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained: %+v", b.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Concurrent producers on two streams, a sink that loses every third
// acknowledgement after storing the batch: every record arrives exactly
// once, in order, with no gaps.
func TestExactlyOnceInOrderThroughLostAcks(t *testing.T) {
	s, _ := openSink(t)
	var n atomic.Int64
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 {
			s.ServeHTTP(w, r)
			return
		}
		// Store, then lose the answer: the forwarder must resend.
		s.ServeHTTP(httptest.NewRecorder(), r)
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
	}))
	defer lossy.Close()
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLink(false) // closed while producing: a backlog builds
	go b.Forward(ctx, buffer.ForwardOptions{Sink: lossy.URL, Link: l, BatchRecords: 50})

	var wg sync.WaitGroup
	var acked [2]atomic.Int64
	for p := 0; p < 8; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				stream := []string{"pos", "telemetry"}[p%2]
				if _, err := b.Append(ctx, buffer.Input{Stream: stream, Payload: []byte(fmt.Sprintf("p%d-%d", p, i))}); err != nil {
					t.Error(err)
					return
				}
				acked[p%2].Add(1)
				if i == 100 && p == 0 {
					l.set(true) // the link comes back mid-stream
				}
			}
		}(p)
	}
	wg.Wait()
	drain(t, b, 20*time.Second)
	sum, err := s.Summary()
	if err != nil || len(sum) != 2 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	for i, st := range sum {
		want := uint64(acked[i].Load())
		if st.Count != want || st.First != 1 || st.Last != want || len(st.Gaps) != 0 || st.OutOfOrder != 0 {
			t.Errorf("stream %s: %+v, want %d records 1..%d in order without gaps", st.Stream, st, want, want)
		}
	}
	if sum[0].Duplicates+sum[1].Duplicates == 0 {
		t.Error("no duplicates refused: the lost acknowledgements were not exercised")
	}
	recs, _ := s.Records("n1", b.Epoch(), "pos")
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Key != record.Key("n1", b.Epoch(), "pos", r.Seq) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if st := b.Stats(); st.Forwarded != 2000 || st.Appended != 2000 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A backlog, its order and the sequence numbers survive a restart.
func TestBacklogSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	ctx := context.Background()
	b, err := buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := b.Append(ctx, buffer.Input{Stream: "s", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	epoch := b.Epoch()
	b.Close()
	b, err = buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Records != 10 || b.Epoch() != epoch || st.Oldest.IsZero() {
		t.Fatalf("after reopen: %+v epoch %s (was %s)", st, b.Epoch(), epoch)
	}
	r, err := b.Append(ctx, buffer.Input{Stream: "s"})
	if err != nil || r[0].Seq != 11 {
		t.Fatalf("next seq %+v %v, want 11", r, err)
	}
	s, srv := openSink(t)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go b.Forward(fctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	drain(t, b, 10*time.Second)
	sum, _ := s.Summary()
	if len(sum) != 1 || sum[0].Count != 11 || len(sum[0].Gaps) != 0 {
		t.Fatalf("sink %+v", sum)
	}
}

func TestOverflowPolicies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		policy       buffer.Overflow
		wantErr      bool
		wantRecords  int64
		wantDropped  int64
		wantFirstSeq uint64 // at the sink after draining
	}{
		{buffer.Block, true, 5, 0, 1},
		{buffer.DropNewest, false, 5, 3, 1},
		{buffer.DropOldest, false, 5, 3, 4},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "n", MaxRecords: 5, Overflow: tc.policy})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var full int
			for i := 0; i < 8; i++ {
				_, err := b.Append(ctx, buffer.Input{Stream: "s", Payload: []byte{byte(i)}})
				if errors.Is(err, buffer.ErrFull) {
					full++
					if !strings.Contains(err.Error(), "retry later") {
						t.Errorf("back-pressure error does not say what to do: %v", err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
			}
			st := b.Stats()
			if (full == 3) != tc.wantErr || st.Records != tc.wantRecords || st.Dropped != tc.wantDropped {
				t.Fatalf("%d refused, stats %+v", full, st)
			}
			s, srv := openSink(t)
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go b.Forward(fctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
			drain(t, b, 10*time.Second)
			sum, _ := s.Summary()
			if len(sum) != 1 || sum[0].Count != 5 || sum[0].First != tc.wantFirstSeq {
				t.Fatalf("sink %+v", sum)
			}
		})
	}
}

// One append larger than a bound is refused whatever the policy, and
// drops nothing to make room it could never have.
func TestTooLargeDropsNothing(t *testing.T) {
	for _, p := range []buffer.Overflow{buffer.Block, buffer.DropOldest, buffer.DropNewest} {
		b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "n", MaxRecords: 3, Overflow: p})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		b.Append(ctx, buffer.Input{Stream: "s"}, buffer.Input{Stream: "s"})
		_, err = b.Append(ctx, make4()...)
		if !errors.Is(err, buffer.ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", p, err)
		}
		if st := b.Stats(); st.Records != 2 || st.Dropped != 0 {
			t.Errorf("%s: %+v, want the 2 records untouched", p, st)
		}
		r, err := b.Append(ctx, buffer.Input{Stream: "s"})
		if err != nil || r[0].Seq != 3 {
			t.Errorf("%s: next append %+v %v, want seq 3 (the refused call took no seqs)", p, r, err)
		}
		b.Close()
	}
}

func make4() []buffer.Input {
	return []buffer.Input{{Stream: "s"}, {Stream: "s"}, {Stream: "s"}, {Stream: "s"}}
}

// The memory mode is the negative control: what it acknowledged is gone
// after a restart.
func TestMemoryModeLosesOnRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "n", Durability: buffer.Memory})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(context.Background(), buffer.Input{Stream: "s"}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = buffer.Open(path, buffer.Options{Node: "n", Durability: buffer.Memory})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Records != 0 || st.Durability != "memory" {
		t.Fatalf("memory mode kept %+v across a restart", st)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("memory mode wrote %s", path)
	}
}

// A damaged database is never silently reset: Open fails, says so, and
// the file is kept aside byte for byte.
func TestCorruptDatabaseIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	b.Append(context.Background(), buffer.Input{Stream: "s", Payload: []byte("keep me")})
	b.Close()
	data, _ := os.ReadFile(path)
	// Scribble over both meta pages.
	bad := append([]byte(nil), data...)
	for i := 0; i < 8192 && i < len(bad); i++ {
		bad[i] ^= 0x5a
	}
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = buffer.Open(path, buffer.Options{Node: "n"})
	if !errors.Is(err, buffer.ErrCorrupt) || !strings.Contains(err.Error(), "moved aside") {
		t.Fatalf("open of a corrupt file: %v", err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("kept aside: %v", aside)
	}
	if got, _ := os.ReadFile(aside[0]); !bytes.Equal(got, bad) {
		t.Fatal("the file kept aside is not the original")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the corrupt file is still in place")
	}
	// A second corrupt file within the same second is kept beside the
	// first, not over it.
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := buffer.Open(path, buffer.Options{Node: "n"}); !errors.Is(err, buffer.ErrCorrupt) {
		t.Fatalf("second open of a corrupt file: %v", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 2 {
		t.Fatalf("kept aside after two: %v", aside)
	}
}

// A database another process holds is not corrupt: Open says who holds
// it and leaves the file alone.
func TestHeldDatabaseIsNotMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = buffer.Open(path, buffer.Options{Node: "n", LockTimeout: 200 * time.Millisecond})
	if err == nil || errors.Is(err, buffer.ErrCorrupt) || !strings.Contains(err.Error(), "another process holds it") {
		t.Fatalf("second open: %v", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("a held database was moved aside: %v", aside)
	}
}

// A full disk (a small tmpfs made for the test): producers get a clear
// error, nothing acknowledged is lost, and the buffer recovers when space
// returns.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	b, err := buffer.Open(filepath.Join(dir, "buf.db"), buffer.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	payload := bytes.Repeat([]byte("x"), 1000)
	var acked int
	var fullErr error
	for i := 0; i < 2000; i++ {
		if _, err := b.Append(ctx, buffer.Input{Stream: "s", Payload: payload}); err != nil {
			fullErr = err
			break
		}
		acked++
	}
	if fullErr == nil || !strings.Contains(fullErr.Error(), "no space left") || !strings.Contains(fullErr.Error(), "nothing of it was stored") {
		t.Fatalf("after %d appends: %v; want a clear disk-full error", acked, fullErr)
	}
	t.Logf("disk full after %d appends: %v", acked, fullErr)
	// Space returns.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=8m"); err != nil {
		t.Fatalf("remount: %v", err)
	}
	if _, err := b.Append(ctx, buffer.Input{Stream: "s", Payload: payload}); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	acked++
	s, srv := openSink(t)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go b.Forward(fctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	drain(t, b, 10*time.Second)
	sum, _ := s.Summary()
	if len(sum) != 1 || sum[0].Count != uint64(acked) || len(sum[0].Gaps) != 0 {
		t.Fatalf("sink %+v, want all %d acknowledged records without gaps", sum, acked)
	}
}

var _ = net.IPv4len

// A region comes back at once: twenty forwarders with backlogs flush into
// one sink that admits 2 Mbit/s. The sink refuses what it cannot take
// (429), the forwarders wait its Retry-After with jitter, and every record
// arrives exactly once; the sink never admits beyond its rate.
func TestRegionalReconnectIsAdmitted(t *testing.T) {
	const forwarders, backlog = 20, 200
	adm := sink.Admission{Rate: 2 * units.Mbit, Concurrency: 2, MaxWait: 500 * time.Millisecond}
	s, err := sink.Open(filepath.Join(t.TempDir(), "sink.db"), nil, sink.WithoutAuth(), sink.WithAdmission(adm))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// What the sink stored, when: the admitted bytes per second.
	var mu sync.Mutex
	type arrival struct {
		at time.Time
		n  int64
	}
	var stored []arrival
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		switch rec.Code {
		case http.StatusOK:
			mu.Lock()
			stored = append(stored, arrival{time.Now(), r.ContentLength})
			mu.Unlock()
		case http.StatusTooManyRequests:
			refused.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLink(false)
	var bufs []*buffer.Buffer
	payload := bytes.Repeat([]byte("s"), 300)
	var total int64
	for i := 0; i < forwarders; i++ {
		b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: fmt.Sprintf("store-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for j := 0; j < backlog; j++ {
			if _, err := b.Append(ctx, buffer.Input{Stream: "sales", Payload: payload}); err != nil {
				t.Fatal(err)
			}
		}
		total += b.Stats().Bytes
		bufs = append(bufs, b)
		go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: l, BatchRecords: 50})
	}
	start := time.Now()
	l.set(true) // every store's link returns in the same instant
	// At 2 Mbit/s (250 kB/s) after a 512 KiB burst; 3x for a loaded machine
	// and the jittered waits.
	ideal := time.Duration(float64(total) / 250e3 * float64(time.Second))
	for _, b := range bufs {
		drain(t, b, 3*ideal+10*time.Second)
	}
	t.Logf("%d bytes from %d forwarders in %s (ideal %s), %d refusals", total, forwarders, time.Since(start).Round(time.Millisecond), ideal.Round(time.Millisecond), refused.Load())
	if refused.Load() == 0 {
		t.Error("the sink refused nothing: admission was not exercised")
	}
	var throttled int64
	for _, b := range bufs {
		st := b.Stats()
		throttled += st.Throttled
		if st.Forwarded != backlog || st.DeadLettered != 0 || st.Dropped != 0 {
			t.Errorf("%+v: want %d forwarded, none dead-lettered or dropped", st, backlog)
		}
	}
	if throttled == 0 {
		t.Error("no forwarder counted a 429")
	}
	sum, err := s.Summary()
	if err != nil || len(sum) != forwarders {
		t.Fatalf("summary: %d streams, %v", len(sum), err)
	}
	for _, st := range sum {
		if st.Count != backlog || len(st.Gaps) != 0 || st.Duplicates != 0 {
			t.Errorf("%s: %+v: want %d records once each", st.Node, st, backlog)
		}
	}
	// Within any second after the burst, no more than the rate and one
	// batch's rounding.
	mu.Lock()
	defer mu.Unlock()
	burst := int64(512 << 10)
	for i := range stored {
		var in int64
		for j := i; j < len(stored) && stored[j].at.Sub(stored[i].at) < time.Second; j++ {
			in += stored[j].n
		}
		if limit := 250_000 + burst + 64<<10; stored[i].at.Sub(start) > 3*time.Second && in > limit {
			t.Errorf("%d bytes admitted in the second from %s: above the rate (%d)", in, stored[i].at.Sub(start), limit)
			break
		}
	}
}

// A batch larger than the sink's admission can ever take within its wait
// (a fast link's quarter second against a slow ingest rate) is sent
// smaller after each refusal, not resent as it was for ever.
func TestRefusedBatchShrinks(t *testing.T) {
	// 2 Mbit/s with a 512 KiB burst and 300 ms of queueing: nothing much
	// larger than 600 kB is ever admitted.
	adm := sink.Admission{Rate: 2 * units.Mbit, MaxWait: 300 * time.Millisecond}
	s, err := sink.Open(filepath.Join(t.TempDir(), "sink.db"), nil, sink.WithoutAuth(), sink.WithAdmission(adm))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := bytes.Repeat([]byte("j"), 4<<10)
	const n = 300 // 1.2 MB, all in one 2 MiB batch
	for range n {
		if _, err := b.Append(ctx, buffer.Input{Stream: "journal", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true), BatchRecords: 1000, BatchBytes: 2 << 20})
	// 1.2 MB at 250 kB/s is 5 s; a first Retry-After of 3 s and its jitter.
	drain(t, b, 40*time.Second)
	st := b.Stats()
	if st.Forwarded != n || st.Throttled == 0 {
		t.Fatalf("%+v: want all %d forwarded after at least one 429", st, n)
	}
}
