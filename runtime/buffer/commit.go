package buffer

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	bolt "go.etcd.io/bbolt"
)

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// store is where a commit writes: the bbolt transaction, or the memory
// queue.
type store interface {
	put(key uint64, val []byte) error
	dropOldest() (size int, ok bool, err error)
	setSeq(stream string, seq uint64) error
	// counts are the queue's records and bytes, kept in the same
	// transaction as the queue so bounds are checked against the truth
	// even while the forwarder removes records.
	counts() (records, bytes int64)
	setCounts(records, bytes int64) error
}

type boltStore struct{ q, meta *bolt.Bucket }

var (
	kRecords = []byte("n/records")
	kBytes   = []byte("n/bytes")
)

func (s boltStore) counts() (int64, int64)     { return getCounts(s.meta) }
func (s boltStore) setCounts(r, b int64) error { return putCounts(s.meta, r, b) }

func getCounts(meta *bolt.Bucket) (int64, int64) {
	var r, b int64
	if v := meta.Get(kRecords); len(v) == 8 {
		r = int64(binary.BigEndian.Uint64(v))
	}
	if v := meta.Get(kBytes); len(v) == 8 {
		b = int64(binary.BigEndian.Uint64(v))
	}
	return r, b
}

func putCounts(meta *bolt.Bucket, r, b int64) error {
	if err := meta.Put(kRecords, u64(uint64(r))); err != nil {
		return err
	}
	return meta.Put(kBytes, u64(uint64(b)))
}

func (s boltStore) put(k uint64, v []byte) error { return s.q.Put(u64(k), v) }
func (s boltStore) setSeq(stream string, seq uint64) error {
	return s.meta.Put([]byte("seq/"+stream), u64(seq))
}
func (s boltStore) dropOldest() (int, bool, error) {
	k, v := s.q.Cursor().First()
	if k == nil {
		return 0, false, nil
	}
	n := len(v)
	return n, true, s.q.Delete(k)
}

type memStore struct{ b *Buffer }

func (s memStore) counts() (int64, int64) { return s.b.records, s.b.bytes }
func (s memStore) setCounts(r, b int64) error {
	s.b.records, s.b.bytes = r, b
	return nil
}

func (s memStore) put(k uint64, v []byte) error {
	s.b.mem = append(s.b.mem, memItem{key: k, val: v})
	return nil
}
func (s memStore) setSeq(string, uint64) error { return nil }
func (s memStore) dropOldest() (int, bool, error) {
	if len(s.b.mem) == 0 {
		return 0, false, nil
	}
	n := len(s.b.mem[0].val)
	s.b.mem = s.b.mem[1:]
	return n, true, nil
}

// commit stores a group of appends in one transaction (one fsync pair).
// Each request succeeds or fails whole; a failed transaction fails them
// all and changes nothing.
func (b *Buffer) commit(group []*appendReq) {
	// Appends queued before the buffer failed are not committed either:
	// they would take sequence numbers the disk may already hold.
	if err := b.failure(); err != nil {
		for _, r := range group {
			r.out, r.err = nil, err
		}
		return
	}
	now := time.Now().UTC()
	b.mu.Lock()
	next := b.next
	var records, bytes int64
	seqs := map[string]uint64{}
	for _, r := range group {
		for _, in := range r.in {
			if _, ok := seqs[in.Stream]; !ok {
				seqs[in.Stream] = b.seqs[in.Stream]
			}
		}
	}
	b.mu.Unlock()

	var dropped, appended int64
	apply := func(s store) error {
		records, bytes = s.counts()
		for _, r := range group {
			r.err = nil
			vals := make([][]byte, len(r.in))
			recs := make([]record.Record, len(r.in))
			var size int64
			for i, in := range r.in {
				seq := seqs[in.Stream] + 1
				seqs[in.Stream] = seq
				recs[i] = record.Record{Key: record.Key(b.o.Node, b.epoch, in.Stream, seq), Node: b.o.Node, Epoch: b.epoch, Stream: in.Stream, Seq: seq, Time: now, Meta: in.Meta, Payload: in.Payload}
				v, err := json.Marshal(recs[i])
				if err != nil {
					return err
				}
				vals[i] = v
				size += int64(len(v))
			}
			fits := records+int64(len(r.in)) <= b.o.MaxRecords && bytes+size <= b.o.MaxBytes
			tooLarge := int64(len(r.in)) > b.o.MaxRecords || size > b.o.MaxBytes
			switch {
			case tooLarge:
				// Alone it exceeds the bound: refuse it and drop nothing,
				// whatever the policy; retrying cannot help.
				for i := len(r.in) - 1; i >= 0; i-- {
					seqs[r.in[i].Stream]--
				}
				r.err = fmt.Errorf("%w: %d records, %d bytes in one append; the bounds are %d records, %d bytes: split it", ErrTooLarge, len(r.in), size, b.o.MaxRecords, b.o.MaxBytes)
				continue
			case fits:
			case b.o.Overflow == Block:
				// Undo the seqs this request took: nothing of it is stored.
				for i := len(r.in) - 1; i >= 0; i-- {
					seqs[r.in[i].Stream]--
				}
				r.err = fmt.Errorf("%w: %d records, %d bytes queued (bounds %d records, %d bytes): the uplink has been unusable long enough to fill it; retry later or raise --buffer-max-bytes/--buffer-max-records", ErrFull, records, bytes, b.o.MaxRecords, b.o.MaxBytes)
				continue
			case b.o.Overflow == DropNewest:
				r.out = make([]Receipt, len(r.in))
				for i, rec := range recs {
					r.out[i] = Receipt{Stream: rec.Stream, Seq: rec.Seq, Key: rec.Key, Dropped: true}
				}
				dropped += int64(len(r.in))
				for stream := range seqs {
					if err := s.setSeq(stream, seqs[stream]); err != nil {
						return err
					}
				}
				continue
			case b.o.Overflow == DropOldest:
				for records+int64(len(r.in)) > b.o.MaxRecords || bytes+size > b.o.MaxBytes {
					n, ok, err := s.dropOldest()
					if err != nil {
						return err
					}
					if !ok {
						break
					}
					records--
					bytes -= int64(n)
					dropped++
				}
			}
			r.out = make([]Receipt, len(r.in))
			for i, rec := range recs {
				if err := s.put(next, vals[i]); err != nil {
					return err
				}
				next++
				r.out[i] = Receipt{Stream: rec.Stream, Seq: rec.Seq, Key: rec.Key, Hash: record.Hash(&rec)}
			}
			records += int64(len(r.in))
			bytes += size
			appended += int64(len(r.in))
		}
		for stream, seq := range seqs {
			if err := s.setSeq(stream, seq); err != nil {
				return err
			}
		}
		return s.setCounts(records, bytes)
	}

	var err error
	var txid int
	if b.db == nil {
		b.mu.Lock()
		before, beforeBytes := b.records, b.bytes
		err = apply(memStore{b})
		if err != nil {
			b.records, b.bytes = before, beforeBytes
		}
		b.mu.Unlock()
	} else {
		err = b.db.Update(func(tx *bolt.Tx) error {
			txid = tx.ID()
			return apply(boltStore{q: tx.Bucket(bQueue), meta: tx.Bucket(bMeta)})
		})
	}
	if err != nil {
		if b.db != nil && !diskFull(err) {
			err = fmt.Errorf("buffer commit failed, and whether it reached the disk is unknown (the buffer stops): %w", err)
		} else {
			err = fmt.Errorf("buffer commit failed, nothing of it was stored: %w", err)
		}
		for _, r := range group {
			r.out, r.err = nil, err
		}
		b.mu.Lock()
		b.st.LastError = err.Error()
		b.mu.Unlock()
		b.o.Logger.Error("buffer commit failed", "err", err)
		b.o.Events.Emit("commit-failed", "err", err.Error())
		if b.db != nil && !diskFull(err) {
			// Possibly committed on disk after all: stop, so the records
			// get the sequence numbers the disk says, not reused ones.
			b.fail(err)
			b.o.Logger.Error("the buffer stops: a commit failed in a way that may have reached the disk; restart to reopen it", "err", err)
			b.o.Events.Emit("failed", "err", err.Error())
		}
		return
	}
	b.mu.Lock()
	wasEmpty := b.records == 0
	b.next = next
	if b.db != nil {
		b.mirrorLocked(txid, records, bytes)
	}
	for s, v := range seqs {
		b.seqs[s] = v
	}
	if wasEmpty && appended > 0 || dropped > 0 || b.oldest.IsZero() && b.records > 0 {
		b.oldest = b.headTimeLocked(now)
	}
	b.st.Appended += appended
	b.st.Dropped += dropped
	b.st.Commits++
	b.st.LastError = ""
	if appended > 0 {
		close(b.added)
		b.added = make(chan struct{})
	}
	b.mu.Unlock()
	if dropped > 0 {
		b.o.Events.Emit("dropped", "records", dropped, "policy", string(b.o.Overflow))
		b.o.Logger.Warn("buffer full: records dropped", "records", dropped, "policy", b.o.Overflow)
	}
}

// headTimeLocked is when the oldest queued record was appended (now if
// none can be read).
func (b *Buffer) headTimeLocked(now time.Time) time.Time {
	var v []byte
	if b.db == nil {
		if len(b.mem) == 0 {
			return time.Time{}
		}
		v = b.mem[0].val
	} else {
		_ = b.db.View(func(tx *bolt.Tx) error {
			_, val := tx.Bucket(bQueue).Cursor().First()
			v = append([]byte(nil), val...)
			return nil
		})
	}
	if v == nil {
		return time.Time{}
	}
	var r record.Record
	if json.Unmarshal(v, &r) != nil {
		return now
	}
	return r.Time
}

// mirrorLocked copies counts a committed transaction wrote into memory,
// unless a later transaction's are already there (the committer and the
// forwarder finish in either order).
func (b *Buffer) mirrorLocked(txid int, records, bytes int64) {
	if txid < b.mirrored {
		return
	}
	b.mirrored, b.records, b.bytes = txid, records, bytes
}
