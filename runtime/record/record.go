// Package record is the format the store-and-forward buffer, the cloud sink
// and the validators share: a record, a batch of them as posted to the
// sink, the sink's acknowledgement, and its per-stream summary.
//
// Every record carries an idempotency key, node/epoch/stream/seq: the
// epoch names one buffer database (a new database, a new epoch), and seq
// counts the stream's records in it from 1. The sink stores a key once and
// refuses it afterwards, so a batch resent after a crash or a lost
// acknowledgement is delivered exactly once.
//
//	POST /v1/batches  Batch (JSON)  ->  Ack (200); Ack with Conflicts (409);
//	                                    Unstorable (422)
//	GET  /v1/streams                ->  []StreamSummary
//	GET  /v1/hashes?node=&epoch=&stream=&after=  ->  Hashes
package record

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Record is one appended item.
type Record struct {
	Key     string            `json:"key"`
	Node    string            `json:"node"`
	Epoch   string            `json:"epoch"`
	Stream  string            `json:"stream"`
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"` // when it was appended
	Meta    map[string]string `json:"meta,omitempty"`
	Payload []byte            `json:"payload"` // base64 in JSON
}

// Key is the idempotency key of a record.
func Key(node, epoch, stream string, seq uint64) string {
	return fmt.Sprintf("%s/%s/%s/%d", node, epoch, stream, seq)
}

// Hash identifies what a record says (its time, metadata and payload),
// in hex: the buffer's receipt carries it, the sink keeps it with the
// key, so a resend hashes the same and a different record under the
// same key does not. Each part is length-prefixed, so no two records
// share an encoding; empty and absent metadata hash alike, as JSON
// cannot tell them apart.
func Hash(r *Record) string {
	sum := Sum(r)
	return hex.EncodeToString(sum[:])
}

// Sum is Hash as bytes, as the sink keeps it with the key.
func Sum(r *Record) [32]byte {
	h := sha256.New()
	var n [8]byte
	put := func(v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	field := func(b []byte) {
		put(uint64(len(b)))
		h.Write(b)
	}
	t := r.Time.UTC()
	put(uint64(t.Unix()))
	put(uint64(t.Nanosecond()))
	keys := make([]string, 0, len(r.Meta))
	for k := range r.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	put(uint64(len(keys)))
	for _, k := range keys {
		field([]byte(k))
		field([]byte(r.Meta[k]))
	}
	field(r.Payload)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// SeqHash is one stored record's sequence number and Hash, as the sink
// answers GET /v1/hashes.
type SeqHash struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Hashes is one page of a stream's SeqHash, in sequence order; More says
// another page follows (ask again with after = the last seq).
type Hashes struct {
	Hashes []SeqHash `json:"hashes"`
	More   bool      `json:"more,omitempty"`
}

// Batch is what the forwarder posts to the sink.
type Batch struct {
	Records []Record `json:"records"`
}

// Ack is the sink's answer to a batch, sent only once the batch is
// durable at the sink.
type Ack struct {
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"` // keys already stored with the same content, refused
	// Conflicts are keys already stored with different content: kept
	// aside at the sink, never counted as delivered. A batch with any is
	// answered 409, and the forwarder keeps its records and retries.
	Conflicts []string `json:"conflicts,omitempty"`
}

// Unstorable is the sink's 422 answer: a record of the batch it can
// never store (the forwarder moves that one aside and sends the rest).
type Unstorable struct {
	Record int    `json:"record"` // its index in the batch
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// StreamSummary is what the sink received on one stream of one buffer
// (node, epoch): what validators judge.
type StreamSummary struct {
	Node   string `json:"node"`
	Epoch  string `json:"epoch"`
	Stream string `json:"stream"`
	Count  uint64 `json:"count"` // distinct records stored
	First  uint64 `json:"firstSeq"`
	Last   uint64 `json:"lastSeq"`
	// Gaps are the missing sequence ranges between First and Last.
	Gaps [][2]uint64 `json:"gaps,omitempty"`
	// Duplicates counts records refused because their key was stored
	// with the same content.
	Duplicates uint64 `json:"duplicates"`
	// Conflicts counts records whose key was stored with different
	// content: forged, or a bug; kept aside, never delivered.
	Conflicts uint64 `json:"conflicts,omitempty"`
	// OutOfOrder counts records that arrived after a higher seq of their
	// stream had been stored.
	OutOfOrder   uint64    `json:"outOfOrder"`
	FirstArrival time.Time `json:"firstArrival"`
	LastArrival  time.Time `json:"lastArrival"`
}
