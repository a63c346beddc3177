// Package sink is the cloud's receiving end of the store-and-forward
// buffer (edgeguard sink): it stores batches durably (bbolt, fsync'd before
// it answers), deduplicates by idempotency key so delivery is exactly
// once, and answers what it received per stream: counts, sequence gaps,
// duplicates refused, out-of-order arrivals, arrival times.
package sink

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/internal/limit"
	"github.com/edgefault/edgefault/runtime/record"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bolt "go.etcd.io/bbolt"
)

var (
	bKeys      = []byte("keys")      // idempotency key -> arrival (unix ns, 8 bytes) + content hash (32) + hash version (1)
	bStats     = []byte("stats")     // stream id -> json streamStats
	bData      = []byte("data")      // stream id -> bucket: seq -> record
	bConflicts = []byte("conflicts") // key + "#" + content hash -> record that conflicted
)

type streamStats struct {
	Duplicates   uint64    `json:"d"`
	Conflicts    uint64    `json:"c,omitempty"`
	OutOfOrder   uint64    `json:"o"`
	MaxSeq       uint64    `json:"m"`
	FirstArrival time.Time `json:"f"`
	LastArrival  time.Time `json:"l"`
}

// Sink stores what forwarders send. Create it with Open.
type Sink struct {
	db     *bolt.DB
	log    *events.Log
	mu     sync.Mutex // one batch at a time keeps the dedup check and the write together
	mux    *http.ServeMux
	bodies *limit.Bodies
	// sites are the credentials by token hash; open: no authentication.
	sites   map[[32]byte]*Site
	readers map[[32]byte]bool
	open    bool
	// admission bounds ingest (WithAdmission); ad applies it.
	admission Admission
	ad        *admitter
}

// Open opens (creating) the sink's database at path. It needs
// WithCredentials, or WithoutAuth said explicitly.
func Open(path string, log *events.Log, opts ...Option) (*Sink, error) {
	probe := &Sink{}
	for _, o := range opts {
		o(probe)
	}
	if probe.sites == nil && !probe.open {
		return nil, errors.New("the sink needs credentials (which site may deliver which nodes' records), or to be told it takes batches from anyone")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("sink database %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bKeys, bStats, bData, bConflicts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, err
	}
	// Batches are decoded as they stream in; what is held is at most a
	// few of the largest at once.
	s := &Sink{db: db, log: log, mux: http.NewServeMux(), sites: probe.sites, readers: probe.readers, open: probe.open, bodies: limit.NewBodies(4*maxBatchBody, maxBatchBody)}
	reg := prometheus.NewRegistry()
	s.ad = newAdmitter(probe.admission, newAdmitMetrics(reg))
	s.log.Emit("admission", s.ad.describe()...)
	s.mux.HandleFunc("POST /v1/batches", s.batches)
	// Counts only (no site or node names): what an operator watches
	// during a regional reconnect.
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /v1/streams", func(w http.ResponseWriter, r *http.Request) {
		// The epochs and sequence numbers it shows are what a forger
		// needs: a site reads its own members' only.
		all, site, code, why := s.reader(r)
		if code != 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeguard-sink"`)
			http.Error(w, why, code)
			return
		}
		sum, err := s.Summary()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !all {
			sum = slices.DeleteFunc(sum, func(st record.StreamSummary) bool { return !allowed(site, st.Node) })
		}
		if sum == nil {
			sum = []record.StreamSummary{} // [] rather than null
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sum)
	})
	s.mux.HandleFunc("GET /v1/hashes", s.hashes)
	return s, nil
}

// hashesPage bounds one answer of GET /v1/hashes (~100 bytes a record);
// hashesPageBytes what it decodes for one (each record is read whole).
const (
	hashesPage      = 10000
	hashesPageBytes = 32 << 20
)

// hashes answers what content the sink holds under each key of one
// stream, so a validator can compare it with what producers were
// acknowledged: sequence coverage alone cannot tell a forged record from
// the real one.
func (s *Sink) hashes(w http.ResponseWriter, r *http.Request) {
	all, site, code, why := s.reader(r)
	if code != 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeguard-sink"`)
		http.Error(w, why, code)
		return
	}
	q := r.URL.Query()
	node, epoch, stream := q.Get("node"), q.Get("epoch"), q.Get("stream")
	if node == "" || epoch == "" || stream == "" {
		http.Error(w, "give node, epoch and stream (as GET /v1/streams names them), and after=SEQ to page", http.StatusBadRequest)
		return
	}
	if !all && !allowed(site, node) {
		http.Error(w, fmt.Sprintf("site %s may not read node %q's records", site.Name, node), http.StatusForbidden)
		return
	}
	var after uint64
	if a := q.Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			http.Error(w, "after: not a sequence number: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	page, err := s.Hashes(node, epoch, stream, after, hashesPage)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

// Hashes returns up to limit stored records of one stream after seq
// after, each with the content hash kept with its key.
func (s *Sink) Hashes(node, epoch, stream string, after uint64, limit int) (record.Hashes, error) {
	out := record.Hashes{Hashes: []record.SeqHash{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bData).Bucket([]byte(node + "/" + epoch + "/" + stream))
		if bk == nil || after == math.MaxUint64 {
			return nil
		}
		// From the record held, whichever hash was kept when it arrived.
		c := bk.Cursor()
		read := 0
		for k, v := c.Seek(u64(after + 1)); k != nil; k, v = c.Next() {
			if len(out.Hashes) == limit || read > hashesPageBytes {
				out.More = true
				return nil
			}
			var r record.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %d of %s/%s/%s: %w", binary.BigEndian.Uint64(k), node, epoch, stream, err)
			}
			out.Hashes = append(out.Hashes, record.SeqHash{Seq: binary.BigEndian.Uint64(k), Hash: record.Hash(&r)})
			read += len(v)
		}
		return nil
	})
	return out, err
}

// Close closes the database.
func (s *Sink) Close() error { return s.db.Close() }

// ServeHTTP implements http.Handler.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// maxBatchBody bounds one batch (the forwarder sends 256 KiB by default).
const maxBatchBody = 32 << 20

func streamID(r *record.Record) string { return r.Node + "/" + r.Epoch + "/" + r.Stream }

func (s *Sink) batches(w http.ResponseWriter, r *http.Request) {
	// Before the body is read: a stranger makes the sink parse nothing.
	site, code, why := s.site(r)
	if code != 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeguard-sink"`)
		http.Error(w, why, code)
		return
	}
	// Admission before the memory budget: a refused batch is never read.
	if s.ad.bucket != nil && r.ContentLength < 0 {
		http.Error(w, "the sink admits batches by their size: send a Content-Length", http.StatusLengthRequired)
		return
	}
	start := time.Now()
	parts, no := s.ad.admit(r.Context(), r)
	if no != nil {
		s.refuse(w, no)
		return
	}
	release, err := s.bodies.Acquire(r.Context(), r)
	if err != nil {
		s.refuse(w, &refusal{"memory", 2 * time.Second})
		return
	}
	// What the ingest rate bounds, and when the bound let each part of it
	// in: the evidence that the sink kept to its admission limit (the
	// event's own time adds how late this handler woke, which a loaded
	// machine spreads).
	due := make([]string, len(parts))
	sizes := make([]int64, len(parts))
	for i, p := range parts {
		due[i], sizes[i] = p.Due.UTC().Format(time.RFC3339Nano), p.Bytes
	}
	s.log.Emit("admitted", "bytes", r.ContentLength, "due", due, "partBytes", sizes, "waitSeconds", time.Since(start).Seconds())
	defer release()
	// Read at the sender's pace, outside the concurrency bound (slot).
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBody))
	if err != nil {
		http.Error(w, "reading the batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	done, no := s.ad.slot(r.Context())
	if no != nil {
		s.refuse(w, no)
		return
	}
	defer done()
	var b record.Batch
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "not a batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	// A record that can never be stored is named, so the forwarder can
	// move it aside instead of retrying it, and everything behind it, for
	// ever.
	for i := range b.Records {
		if !allowed(site, b.Records[i].Node) {
			http.Error(w, fmt.Sprintf("record %d: site %s may not deliver records of node %q", i, site.Name, b.Records[i].Node), http.StatusForbidden)
			return
		}
	}
	for i := range b.Records {
		if err := b.Records[i].Check(); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_ = json.NewEncoder(w).Encode(record.Unstorable{Record: i, Key: b.Records[i].Key, Reason: err.Error()})
			return
		}
	}
	ack, err := s.store(b, r.ContentLength)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if len(ack.Conflicts) > 0 {
		w.WriteHeader(http.StatusConflict)
	}
	_ = json.NewEncoder(w).Encode(ack)
}

// refuse answers 429 and logs it.
func (s *Sink) refuse(w http.ResponseWriter, no *refusal) {
	s.ad.refuse(w, no)
	s.log.Emit("refused", "bound", no.bound, "retryAfterSeconds", no.after.Seconds())
}

// Store writes a batch durably, refusing keys already stored, and returns
// the acknowledgement once it is on disk. A key stored before with the
// same content is a duplicate (a resend); with different content, a
// conflict: kept aside, logged and counted, never a delivery.
func (s *Sink) Store(b record.Batch) (record.Ack, error) { return s.store(b, -1) }

// store is Store for a batch whose body was size bytes (-1: unknown), for
// its event.
func (s *Sink) store(b record.Batch, size int64) (record.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ack record.Ack
	now := time.Now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		keys, stats, data := tx.Bucket(bKeys), tx.Bucket(bStats), tx.Bucket(bData)
		cache := map[string]*streamStats{}
		get := func(id string) *streamStats {
			if st, ok := cache[id]; ok {
				return st
			}
			st := &streamStats{}
			if v := stats.Get([]byte(id)); v != nil {
				_ = json.Unmarshal(v, st)
			}
			cache[id] = st
			return st
		}
		for i := range b.Records {
			rec := &b.Records[i]
			id := streamID(rec)
			st := get(id)
			sum := record.Sum(rec)
			if prev := keys.Get([]byte(rec.Key)); prev != nil {
				if sameContent(prev, rec, sum) {
					st.Duplicates++
					ack.Duplicates++
					continue
				}
				ack.Conflicts = append(ack.Conflicts, rec.Key)
				// Kept aside and counted once, however often it is resent.
				ck := []byte(rec.Key + "#" + hex.EncodeToString(sum[:8]))
				if tx.Bucket(bConflicts).Get(ck) == nil {
					st.Conflicts++
					v, _ := json.Marshal(rec)
					if err := tx.Bucket(bConflicts).Put(ck, v); err != nil {
						return err
					}
				}
				continue
			}
			if err := keys.Put([]byte(rec.Key), append(append(u64(uint64(now.UnixNano())), sum[:]...), hashVersion)); err != nil {
				return err
			}
			bk, err := data.CreateBucketIfNotExists([]byte(id))
			if err != nil {
				return err
			}
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := bk.Put(u64(rec.Seq), v); err != nil {
				return err
			}
			if rec.Seq < st.MaxSeq {
				st.OutOfOrder++
			}
			st.MaxSeq = max(st.MaxSeq, rec.Seq)
			if st.FirstArrival.IsZero() {
				st.FirstArrival = now
			}
			st.LastArrival = now
			ack.Stored++
		}
		for id, st := range cache {
			v, _ := json.Marshal(st)
			if err := stats.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return record.Ack{}, fmt.Errorf("storing a batch of %d: %w", len(b.Records), err)
	}
	s.ad.m.stored.Add(float64(ack.Stored))
	s.ad.m.duplicates.Add(float64(ack.Duplicates))
	s.ad.m.conflicts.Add(float64(len(ack.Conflicts)))
	// The oldest and newest records' append times tell a backlog's
	// batches (appended during an outage) from live ones, and how much of
	// a batch that holds both was backlog.
	var oldest, newest time.Time
	for i := range b.Records {
		t := b.Records[i].Time
		if t.IsZero() {
			continue
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
		if t.After(newest) {
			newest = t
		}
	}
	kv := []any{"records", len(b.Records), "stored", ack.Stored, "duplicates", ack.Duplicates}
	if len(b.Records) > 0 {
		// A forwarder sends one node's records: whose backlog this is.
		kv = append(kv, "node", b.Records[0].Node)
	}
	if size >= 0 {
		kv = append(kv, "bytes", size)
	}
	if !oldest.IsZero() {
		kv = append(kv, "oldest", oldest.UTC().Format(time.RFC3339Nano), "newest", newest.UTC().Format(time.RFC3339Nano))
	}
	s.log.Emit("received", kv...)
	for _, k := range ack.Conflicts {
		s.log.Emit("conflict", "key", k, "what", "a record with this key and different content was stored before: kept aside")
	}
	return ack, nil
}

// hashVersion marks a key stored with record.Sum; keys stored by earlier
// sinks carry legacyHash (no version byte), or no hash at all.
const hashVersion = 2

// sameContent says whether rec is what was stored under its key (prev is
// the key's value), whichever hash the sink that stored it kept.
func sameContent(prev []byte, rec *record.Record, sum [32]byte) bool {
	switch {
	case len(prev) == 8+32+1 && prev[40] == hashVersion:
		return bytes.Equal(prev[8:40], sum[:])
	case len(prev) == 8+32:
		legacy := legacyHash(rec)
		return bytes.Equal(prev[8:40], legacy[:])
	default: // stored before hashes were kept: a duplicate, as it always was
		return true
	}
}

// legacyHash is the content hash sinks kept before record.Hash: a
// resend of a record stored by one must still be a duplicate.
func legacyHash(r *record.Record) [32]byte {
	v, _ := json.Marshal(struct {
		Time    time.Time         `json:"t"`
		Meta    map[string]string `json:"m"`
		Payload []byte            `json:"p"`
	}{r.Time.UTC(), r.Meta, r.Payload})
	return sha256.Sum256(v)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Summary reports every stream received so far.
func (s *Sink) Summary() ([]record.StreamSummary, error) {
	var out []record.StreamSummary
	err := s.db.View(func(tx *bolt.Tx) error {
		stats, data := tx.Bucket(bStats), tx.Bucket(bData)
		return stats.ForEach(func(k, v []byte) error {
			var st streamStats
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			parts := strings.SplitN(string(k), "/", 3)
			if len(parts) != 3 {
				return errors.New("bad stream id " + string(k))
			}
			sum := record.StreamSummary{Node: parts[0], Epoch: parts[1], Stream: parts[2], Duplicates: st.Duplicates, Conflicts: st.Conflicts, OutOfOrder: st.OutOfOrder, FirstArrival: st.FirstArrival, LastArrival: st.LastArrival}
			if bk := data.Bucket(k); bk != nil {
				c := bk.Cursor()
				var prev uint64
				for sk, _ := c.First(); sk != nil; sk, _ = c.Next() {
					seq := binary.BigEndian.Uint64(sk)
					if sum.Count == 0 {
						sum.First = seq
						if seq > 1 {
							sum.Gaps = append(sum.Gaps, [2]uint64{1, seq - 1})
						}
					} else if seq > prev+1 {
						sum.Gaps = append(sum.Gaps, [2]uint64{prev + 1, seq - 1})
					}
					prev = seq
					sum.Count++
				}
				sum.Last = prev
			}
			out = append(out, sum)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Node+out[i].Stream+out[i].Epoch < out[j].Node+out[j].Stream+out[j].Epoch
	})
	return out, err
}

// Records returns the records stored on one stream, in sequence order.
func (s *Sink) Records(node, epoch, stream string) ([]record.Record, error) {
	var out []record.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bData).Bucket([]byte(node + "/" + epoch + "/" + stream))
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(_, v []byte) error {
			var r record.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}
