package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	bolt "go.etcd.io/bbolt"
)

// Link is what the forwarder asks before using the uplink. The speed gate
// (*gate.Gate, *gate.Remote) satisfies it, and failover will.
type Link interface {
	IsOpen() bool
	Changed() <-chan struct{}
}

// Capacity, when the Link also has it, is the measured upstream rate in
// bits per second (0: unknown, no pacing); the flush leaves a share of it
// to other traffic.
type Capacity interface {
	Capacity() float64
}

// Site is the runtimes this one shares its uplink with (*site.Coordinator
// satisfies it): the flush share is split among those flushing, and held
// while one of their gates measures the link.
type Site interface {
	SetFlushing(on bool)
	Flushers() int
	QuietUntil() time.Time
}

// ForwardOptions configure Forward.
type ForwardOptions struct {
	// Sink is the sink's base URL (http://host:port).
	Sink string
	Link Link
	// Share is the part of the measured capacity the flush may use
	// (default 0.8: a fifth is left to other traffic).
	Share        float64
	BatchRecords int // default 500
	BatchBytes   int // default 256 KiB
	Client       *http.Client
	// Token is the site's bearer token for the sink.
	Token string
	// Site, when set, paces the flush with the site's other runtimes.
	Site Site
	// NoJitter waits back-offs and Retry-Afters exactly, as naive
	// forwarders do: a region that lost its link together then retries
	// together. For comparisons only.
	NoJitter bool
}

type item struct {
	key []byte
	val []byte
}

// Forward ships queued records to the sink until ctx ends: oldest first,
// in batches, only while the link is usable, retrying with back-off, and
// deleting records only once the sink has acknowledged them.
func (b *Buffer) Forward(ctx context.Context, o ForwardOptions) error {
	if o.Sink == "" || o.Link == nil {
		return errors.New("forward needs a sink URL and a link")
	}
	if o.Share <= 0 || o.Share > 1 {
		o.Share = 0.8
	}
	if o.BatchRecords <= 0 {
		o.BatchRecords = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 256 << 10
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	}
	backoff := time.Duration(0)
	// sizeCap bounds batches after a 429 (0: no bound).
	sizeCap := 0
	paused := false
	flushing := func(on bool) {
		if o.Site != nil {
			o.Site.SetFlushing(on)
		}
	}
	defer flushing(false)
	for ctx.Err() == nil {
		if err := b.failure(); err != nil {
			return err
		}
		if !o.Link.IsOpen() {
			flushing(false)
			if !paused {
				paused = true
				b.mu.Lock()
				b.flushEst = 0
				b.mu.Unlock()
				b.o.Events.Emit("flush-paused")
			}
			select {
			case <-ctx.Done():
				return nil
			case <-o.Link.Changed():
			}
			continue
		}
		if paused {
			paused = false
			b.o.Events.Emit("flush-resumed", "records", b.Stats().Records)
		}
		b.mu.Lock()
		added := b.added
		b.mu.Unlock()
		// A batch the sink's admission refused may never fit its bound (a
		// quarter second of a fast link against a slow ingest rate): a
		// refusal halves the batches, down to 16 KiB, and each batch taken
		// lets them grow back by an eighth.
		size := flushBatchBytes(o)
		if sizeCap > 0 {
			size = min(size, sizeCap)
		}
		batch, err := b.head(o.BatchRecords, size)
		if err != nil {
			// A read error (the disk) is retried like a failed send: the
			// process keeps serving producers and the gate meanwhile.
			if !b.retryAfter(ctx, o, &backoff, fmt.Errorf("reading the queue: %w", err), 0) {
				return nil
			}
			continue
		}
		if len(batch) == 0 {
			flushing(false)
			b.mu.Lock()
			b.flushEst = 0 // nothing to flush: the rate reads 0, not the last one
			b.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-added:
			case <-o.Link.Changed():
			}
			continue
		}
		if o.Site != nil {
			// A gate of the site is measuring: hold, so that what it
			// reads is the link and not this flush.
			if q := time.Until(o.Site.QuietUntil()); q > 0 {
				flushing(false)
				b.o.Events.Emit("flush-held", "upToMs", q.Milliseconds())
				// In steps: a gate done early ends the quiet.
				for q > 0 {
					if !sleep(ctx, min(q, 100*time.Millisecond)) {
						return nil
					}
					q = time.Until(o.Site.QuietUntil())
				}
				continue
			}
		}
		flushing(true)
		start := time.Now()
		n, err := b.send(ctx, o, batch)
		var bad *unstorableError
		if errors.As(err, &bad) {
			// Only a record the sink says it can never store is moved
			// aside; anything else (credentials, conflicts, a busy or
			// broken sink) keeps every record and retries.
			if derr := b.deadLetter(batch[bad.u.Record], bad.u.Reason); derr != nil {
				err = fmt.Errorf("moving an unstorable record aside: %w", derr)
			} else {
				continue
			}
		}
		if err != nil {
			// Waiting, not sending: the site's others take the share.
			flushing(false)
		}
		var busy *busyError
		if errors.As(err, &busy) {
			// The sink's admission said when to come back: a pause, not a
			// failure, and never a reason to give a record up.
			var sent int
			for _, it := range batch {
				sent += len(it.val)
			}
			sizeCap = max(sent/2, 16<<10)
			if !b.throttled(ctx, o, busy, len(batch)) {
				return nil
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil || !b.retryAfter(ctx, o, &backoff, err, len(batch)) {
				return nil
			}
			continue
		}
		backoff = 0
		if sizeCap > 0 {
			if sizeCap += sizeCap / 8; sizeCap >= flushBatchBytes(o) {
				sizeCap = 0
			}
		}
		if err := b.remove(batch); err != nil {
			// The sink has them; they will be resent and refused as
			// duplicates once the disk lets the delete through.
			if !b.retryAfter(ctx, o, &backoff, err, len(batch)) {
				return nil
			}
			continue
		}
		el := time.Since(start)
		b.o.Events.Emit("flushed", "records", len(batch), "bytes", n, "ms", el.Milliseconds())
		// Pace to the share of the measured link (this runtime's part of
		// its site's share): sleep off what this batch took beyond it.
		if bps := pacedBps(o); bps > 0 {
			if want := time.Duration(float64(n) * 8 / bps * float64(time.Second)); want > el {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(want - el):
				}
			}
		}
		if el := time.Since(start); el > 0 {
			b.mu.Lock()
			rate := float64(n) * 8 / el.Seconds()
			if b.flushEst == 0 {
				b.flushEst = rate
			} else {
				b.flushEst = 0.7*b.flushEst + 0.3*rate
			}
			b.mu.Unlock()
		}
	}
	return nil
}

// flushBatchBytes is a batch's size: BatchBytes, or a quarter second of the
// paced rate when that is more (up to 4 MiB), so that the round trip each
// batch waits for its acknowledgement stays a small part of its time and
// a fast link is not held to a few batches a round trip.
func flushBatchBytes(o ForwardOptions) int {
	return max(o.BatchBytes, min(int(pacedBps(o)/8/4), 4<<20))
}

// pacedBps is the rate this forwarder flushes at: its share of the
// capacity the link measured, divided among the site's runtimes flushing
// (0: unknown, no pacing).
func pacedBps(o ForwardOptions) float64 {
	c, ok := o.Link.(Capacity)
	if !ok {
		return 0
	}
	bps := c.Capacity() * o.Share
	if o.Site != nil {
		bps /= float64(o.Site.Flushers())
	}
	return bps
}

// retryAfter records a failure and waits out the next back-off (0.5 s
// doubling to 30 s, a random half of it taken off so that forwarders that
// failed together do not retry together); false when ctx ended meanwhile.
func (b *Buffer) retryAfter(ctx context.Context, o ForwardOptions, backoff *time.Duration, err error, records int) bool {
	*backoff = min(max(2**backoff, 500*time.Millisecond), 30*time.Second)
	wait := *backoff
	if !o.NoJitter {
		wait = *backoff/2 + rand.N(*backoff/2+1)
	}
	b.mu.Lock()
	b.st.LastError = err.Error()
	b.flushEst = 0
	b.mu.Unlock()
	b.o.Events.Emit("flush-failed", "records", records, "err", err.Error(), "retryInMs", wait.Milliseconds())
	b.o.Logger.Warn("flush failed; will retry", "records", records, "err", err, "in", wait)
	return sleep(ctx, wait)
}

// throttled waits out a sink's 429: its Retry-After, plus up to half again
// at random so that the forwarders it refused together spread out.
func (b *Buffer) throttled(ctx context.Context, o ForwardOptions, busy *busyError, records int) bool {
	wait := busy.after
	if !o.NoJitter {
		wait += rand.N(wait/2 + 1)
	}
	b.mu.Lock()
	b.st.Throttled++
	b.flushEst = 0
	b.mu.Unlock()
	b.o.Events.Emit("flush-throttled", "records", records, "retryInMs", wait.Milliseconds())
	b.o.Logger.Debug("the sink is busy; will retry", "records", records, "in", wait)
	return sleep(ctx, wait)
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// busyError is the sink's 429: come back after this long.
type busyError struct {
	after time.Duration
	msg   string
}

func (e *busyError) Error() string {
	return fmt.Sprintf("the sink is busy (429; retry in %s): %s", e.after, e.msg)
}

// retryAfterHeader reads a Retry-After (seconds or an HTTP date) within
// [1s, 5min]: a sink cannot park a forwarder for ever, nor make it spin.
func retryAfterHeader(v string, now time.Time) time.Duration {
	d := time.Second
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, time.Second), 5*time.Minute)
}

// head reads up to n records (and about maxBytes) from the front.
func (b *Buffer) head(n, maxBytes int) ([]item, error) {
	var out []item
	size := 0
	if b.db == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, m := range b.mem {
			if len(out) == n || (size > 0 && size+len(m.val) > maxBytes) {
				break
			}
			out = append(out, item{key: u64(m.key), val: m.val})
			size += len(m.val)
		}
		return out, nil
	}
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bQueue).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			if size > 0 && size+len(v) > maxBytes {
				break
			}
			out = append(out, item{key: append([]byte(nil), k...), val: append([]byte(nil), v...)})
			size += len(v)
		}
		return nil
	})
	return out, err
}

// send posts a batch and returns the bytes sent once the sink has
// acknowledged it.
func (b *Buffer) send(ctx context.Context, o ForwardOptions, batch []item) (int, error) {
	// The records are sent from where they are, not copied into one body
	// first: a batch of one large record would otherwise be held twice.
	n := len(`{"records":[]}`)
	for i, it := range batch {
		if i > 0 {
			n++
		}
		n += len(it.val)
	}
	open := func() (io.ReadCloser, error) {
		parts := make([]io.Reader, 0, 2*len(batch)+1)
		parts = append(parts, strings.NewReader(`{"records":[`))
		for i, it := range batch {
			if i > 0 {
				parts = append(parts, strings.NewReader(","))
			}
			parts = append(parts, bytes.NewReader(it.val))
		}
		parts = append(parts, strings.NewReader(`]}`))
		return io.NopCloser(io.MultiReader(parts...)), nil
	}
	body, _ := open()
	// Long enough for the batch at a slow link, short enough to notice a
	// dead one.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second+time.Duration(n/1000)*8*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.Sink+"/v1/batches", body)
	if err != nil {
		return 0, err
	}
	// GetBody lets the client resend on a kept-alive connection the
	// server had closed.
	req.ContentLength, req.GetBody = int64(n), open
	req.Header.Set("Content-Type", "application/json")
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusUnprocessableEntity {
		var u record.Unstorable
		if err := json.Unmarshal(ans, &u); err == nil && u.Record >= 0 && u.Record < len(batch) {
			return 0, &unstorableError{u}
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return 0, &busyError{after: retryAfterHeader(resp.Header.Get("Retry-After"), time.Now()), msg: string(bytes.TrimSpace(ans))}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("sink answered %s: %s", resp.Status, bytes.TrimSpace(ans))
	}
	var ack record.Ack
	if err := json.Unmarshal(ans, &ack); err != nil || ack.Stored+ack.Duplicates != len(batch) {
		return 0, fmt.Errorf("sink acknowledged %q for %d records: not an acknowledgement of this batch", ans, len(batch))
	}
	return n, nil
}

// unstorableError is the sink's 422: one record it can never store.
type unstorableError struct{ u record.Unstorable }

func (e *unstorableError) Error() string {
	return fmt.Sprintf("the sink can never store record %s: %s", e.u.Key, e.u.Reason)
}

// deadLetter moves one record the sink can never store out of the queue,
// into the dead-letter bucket (counted, visible in /v1/buffer and
// metrics, kept for an operator), so the records behind it flow again.
func (b *Buffer) deadLetter(it item, reason string) error {
	b.o.Logger.Error("the sink can never store a record: moved aside, the rest flows on", "reason", reason)
	b.o.Events.Emit("dead-lettered", "reason", reason, "bytes", len(it.val))
	var records, size int64
	var txid int
	moved := false
	if b.db == nil {
		b.mu.Lock()
		k := binary.BigEndian.Uint64(it.key)
		for i, m := range b.mem {
			if m.key == k {
				b.mem = append(b.mem[:i], b.mem[i+1:]...)
				b.records--
				b.bytes -= int64(len(m.val))
				b.st.DeadLettered++
				break
			}
		}
		b.oldest = b.headTimeLocked(time.Now())
		b.mu.Unlock()
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		q, meta := tx.Bucket(bQueue), tx.Bucket(bMeta)
		dead, err := tx.CreateBucketIfNotExists(bDead)
		if err != nil {
			return err
		}
		records, size = getCounts(meta)
		v := q.Get(it.key)
		if v == nil {
			return nil // dropped meanwhile (drop-oldest)
		}
		entry, _ := json.Marshal(struct {
			Reason string          `json:"reason"`
			Record json.RawMessage `json:"record"`
		}{reason, v})
		if err := dead.Put(it.key, entry); err != nil {
			return err
		}
		if err := q.Delete(it.key); err != nil {
			return err
		}
		records, size = records-1, size-int64(len(v))
		moved = true
		return putCounts(meta, records, size)
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.mirrorLocked(txid, records, size)
	if moved {
		b.st.DeadLettered++
	}
	b.oldest = b.headTimeLocked(time.Now())
	b.mu.Unlock()
	return nil
}

// remove deletes acknowledged records (those still there: drop-oldest may
// have taken some).
func (b *Buffer) remove(batch []item) error {
	var gone, size, records, bytes int64
	var txid int
	if b.db == nil {
		b.mu.Lock()
		last := binary.BigEndian.Uint64(batch[len(batch)-1].key)
		for len(b.mem) > 0 && b.mem[0].key <= last {
			gone++
			size += int64(len(b.mem[0].val))
			b.mem = b.mem[1:]
		}
		b.mu.Unlock()
	} else {
		err := b.db.Update(func(tx *bolt.Tx) error {
			txid = tx.ID()
			q, meta := tx.Bucket(bQueue), tx.Bucket(bMeta)
			for _, it := range batch {
				if v := q.Get(it.key); v != nil {
					gone++
					size += int64(len(v))
					if err := q.Delete(it.key); err != nil {
						return err
					}
				}
			}
			records, bytes = getCounts(meta)
			records, bytes = records-gone, bytes-size
			return putCounts(meta, records, bytes)
		})
		if err != nil {
			// The sink has them: they will be resent and refused as
			// duplicates, so nothing is lost or doubled.
			return fmt.Errorf("removing %d forwarded records: %w", len(batch), err)
		}
	}
	b.mu.Lock()
	if b.db == nil {
		b.records -= gone
		b.bytes -= size
	} else {
		b.mirrorLocked(txid, records, bytes)
	}
	b.st.Forwarded += gone
	b.oldest = b.headTimeLocked(time.Now())
	b.mu.Unlock()
	return nil
}

// Stats returns the counters.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.Records, s.Bytes, s.Oldest, s.FlushBps = b.records, b.bytes, b.oldest, b.flushEst
	return s
}

// Close stops the committer (pending appends fail) and closes the database.
func (b *Buffer) Close() error {
	first := false
	b.closing.Do(func() { first = true; close(b.quit) })
	if !first {
		return nil
	}
	b.wg.Wait()
	for {
		select {
		case r := <-b.reqs:
			r.err = errors.New("buffer closed")
			close(r.done)
			continue
		default:
		}
		break
	}
	if b.db != nil {
		return b.db.Close()
	}
	return nil
}
