// Package buffer is the durable store-and-forward buffer: producers append
// records, which are acknowledged only once they are on local disk (bbolt,
// fsync'd, many appends per commit), and a forwarder ships them upstream in
// order, in batches, while the link is usable, deleting them only once the
// sink has acknowledged them. With the sink's deduplication by idempotency
// key, delivery is exactly once across crashes and retries.
//
// The buffer is bounded by records and bytes with an explicit overflow
// policy (Block, the default, refuses with ErrFull and never drops what
// was acknowledged; DropOldest; DropNewest), and drops are counted. A
// Memory durability mode acknowledges before anything reaches a disk; it
// loses data on a crash and exists only for comparison and as a negative
// control. Unsynced mode writes to the file but skips fsync: it survives a
// process crash and loses the unsynced tail on a power loss (a common
// misconfiguration, kept as that power loss's negative control).
package buffer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/record"
	bolt "go.etcd.io/bbolt"
)

// Overflow is what happens to an append that does not fit.
type Overflow string

// Overflow policies.
const (
	Block      Overflow = "block"       // refuse the append with ErrFull
	DropOldest Overflow = "drop-oldest" // make room by dropping the oldest records
	DropNewest Overflow = "drop-newest" // accept the append but drop the record
)

// ParseOverflow parses a policy name.
func ParseOverflow(s string) (Overflow, error) {
	switch o := Overflow(s); o {
	case Block, DropOldest, DropNewest:
		return o, nil
	}
	return "", fmt.Errorf("overflow policy %q: use block, drop-oldest or drop-newest", s)
}

// Durability says when an append is acknowledged.
type Durability string

// Durability modes.
const (
	Disk   Durability = "disk"   // after fsync (default)
	Memory Durability = "memory" // at once, in memory only: LOSES DATA on a crash
	// Unsynced: once written to the file, without fsync; what the kernel
	// had not yet written to the disk is LOST on a power loss.
	Unsynced Durability = "unsynced"
)

// ErrFull is returned (wrapped) by Append under the Block policy when the
// buffer is at its bound: back-pressure, nothing was stored.
var ErrFull = errors.New("buffer full")

// ErrTooLarge is returned (wrapped) by Append for a single call that
// alone exceeds a bound: nothing was stored, and retrying cannot help.
var ErrTooLarge = errors.New("append larger than the buffer's bounds")

// ErrFailed is returned (wrapped, with the cause) by Append once a disk
// commit failed for a reason other than a full disk: the database may hold
// the commit although it reported failure (bbolt's meta page written, its
// fsync failed), so what this process holds in memory can no longer be
// trusted. Nothing more is appended or forwarded; Failed fires, and the
// process should exit and be restarted, reopening the buffer from disk.
var ErrFailed = errors.New("buffer failed: restart to reopen it from disk")

// MaxPayload bounds one record's payload: base64-encoded in a batch of
// one, it still fits what the sink reads (32 MiB).
const MaxPayload = 16 << 20

// ErrInvalid is returned (wrapped, with what is wrong) for a record that
// can never be stored or forwarded: a bad stream name.
var ErrInvalid = errors.New("invalid record")

// ErrCorrupt is returned (wrapped) by Open for a database it cannot read.
var ErrCorrupt = errors.New("buffer database is corrupt")

// Options configure a buffer. Zero values take the defaults.
type Options struct {
	Node       string
	MaxRecords int64    // default 1 000 000
	MaxBytes   int64    // default 256 MB (payload and metadata as stored)
	Overflow   Overflow // default Block
	Durability Durability
	Events     *events.Log
	Logger     *slog.Logger
	// Salvage: when the database cannot be read, Open moves it aside,
	// queues every record still readable into a new one (see Salvage)
	// and carries on, instead of failing.
	Salvage bool
	// LockTimeout is how long Open waits for another process to release
	// the database (default 5s).
	LockTimeout time.Duration
}

// Receipt says what became of one appended record.
type Receipt struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Key    string `json:"key"`
	// Hash is record.Hash of what was stored: the sink keeps the same
	// for the key, so a validator can tell the record delivered under
	// this key from a forged one.
	Hash    string `json:"hash,omitempty"`
	Dropped bool   `json:"dropped,omitempty"` // DropNewest: accepted and dropped
}

// Input is one record to append.
type Input struct {
	Stream  string            `json:"stream"`
	Meta    map[string]string `json:"meta,omitempty"`
	Payload []byte            `json:"payload"`
}

// Stats are the buffer's counters.
type Stats struct {
	Records   int64     `json:"records"`
	Bytes     int64     `json:"bytes"`
	Oldest    time.Time `json:"oldest,omitzero"`
	Appended  int64     `json:"appended"`
	Forwarded int64     `json:"forwarded"`
	Dropped   int64     `json:"dropped"`
	// DeadLettered counts records the sink can never store (422), moved
	// out of the queue into the database's dead-letter bucket.
	DeadLettered int64 `json:"deadLettered"`
	// Throttled counts the sink's 429s (its admission): waits, not
	// failures; every record stays queued.
	Throttled  int64   `json:"throttled"`
	Commits    int64   `json:"commits"`
	FlushBps   float64 `json:"flushBitsPerSecond"`
	Durability string  `json:"durability"`
	Overflow   string  `json:"overflow"`
	Epoch      string  `json:"epoch"`
	LastError  string  `json:"lastError,omitempty"`
}

var (
	bMeta  = []byte("meta")
	bQueue = []byte("queue")
	bDead  = []byte("dead") // queue key -> {reason, record}: what the sink can never store
)

// Buffer is an open buffer. Its methods are safe for concurrent use.
type Buffer struct {
	o     Options
	db    *bolt.DB // nil in Memory mode
	epoch string
	reqs  chan *appendReq
	quit  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	next     uint64            // next queue key
	seqs     map[string]uint64 // last seq per stream
	records  int64
	bytes    int64
	oldest   time.Time
	mem      []memItem // Memory mode
	added    chan struct{}
	st       Stats
	flushEst float64
	mirrored int // the transaction whose counts records and bytes show
	closing  sync.Once
	failed   error         // set once a disk commit failed (ErrFailed)
	failedCh chan struct{} // closed then
}

type memItem struct {
	key uint64
	val []byte
}

type appendReq struct {
	in   []Input
	out  []Receipt
	err  error
	done chan struct{}
}

// Open opens (creating if needed) the buffer database at path. A database
// that cannot be read is moved aside (path.corrupt-<time>, kept) and Open
// fails with ErrCorrupt naming both files, or, with Options.Salvage,
// recovers what it can into a new one: never a silent reset.
func Open(path string, o Options) (*Buffer, error) {
	if o.MaxRecords == 0 {
		o.MaxRecords = 1_000_000
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 256_000_000
	}
	if o.Overflow == "" {
		o.Overflow = Block
	}
	if o.Durability == "" {
		o.Durability = Disk
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxRecords < 0 || o.MaxBytes < 0 {
		return nil, fmt.Errorf("buffer bounds must not be negative (records %d, bytes %d)", o.MaxRecords, o.MaxBytes)
	}
	if err := record.ValidNode(o.Node); err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	b := &Buffer{o: o, reqs: make(chan *appendReq, 1024), quit: make(chan struct{}), seqs: map[string]uint64{}, added: make(chan struct{}), failedCh: make(chan struct{})}
	b.st.Durability, b.st.Overflow = string(o.Durability), string(o.Overflow)
	if o.Durability == Memory {
		b.epoch = newEpoch()
		o.Logger.Warn("buffer in MEMORY durability mode: appends are acknowledged before they reach a disk and are LOST on a crash or restart; use it only for comparison")
		o.Events.Emit("memory-mode", "warning", "acknowledged records are lost on a crash")
	} else if err := b.openDB(path); err != nil {
		return nil, err
	}
	b.st.Epoch = b.epoch
	b.wg.Add(1)
	go b.committer()
	return b, nil
}

// Failed is closed once a disk commit failed in a way that leaves the
// process's view of the database untrustworthy (see ErrFailed).
func (b *Buffer) Failed() <-chan struct{} { return b.failedCh }

// Err is the ErrFailed error once the buffer failed, else nil.
func (b *Buffer) Err() error { return b.failure() }

// failure is the ErrFailed error once the buffer failed, else nil.
func (b *Buffer) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

// fail marks the buffer failed (once).
func (b *Buffer) fail(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed != nil {
		return
	}
	b.failed = fmt.Errorf("%w (%v)", ErrFailed, cause)
	close(b.failedCh)
}

// diskFull recognises a full disk or quota, also where bbolt formats the
// cause into its message instead of wrapping it. Such a commit never
// reached its meta page: nothing of it is on disk.
func diskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "no space left on device") || strings.Contains(m, "disk quota exceeded")
}

func newEpoch() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

func (b *Buffer) openDB(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("buffer directory: %w", err)
	}
	if b.o.Salvage {
		// One moved aside by a start that died while salvaging it.
		if err := b.salvagePending(path); err != nil {
			return err
		}
	}
	db, err := openBolt(path, b.o.LockTimeout)
	if err != nil {
		var bad corruption
		if !errors.As(err, &bad) {
			if errors.Is(err, bolt.ErrTimeout) {
				return fmt.Errorf("open buffer %s: another process holds it (is another edgeguard serve running with this --buffer?): %w", path, err)
			}
			// Not the file's content (no space, no permission, ...):
			// never move a good database aside for it.
			return fmt.Errorf("open buffer %s: %w", path, err)
		}
		// Unique: two move-asides in one second must not overwrite each
		// other (each holds acknowledged records).
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		for i := 2; ; i++ {
			if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
				break
			}
			aside = fmt.Sprintf("%s.corrupt-%s-%d", path, time.Now().UTC().Format("20060102T150405Z"), i)
		}
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("%w: %s: %v (and it could not be moved aside: %v); nothing was changed", ErrCorrupt, path, err, rerr)
		}
		b.o.Events.Emit("corrupt", "path", path, "aside", aside, "err", err.Error())
		if !b.o.Salvage {
			return fmt.Errorf("%w: %s cannot be read (%v); it was moved aside to %s and kept; recover what is readable with edgeguard buffer salvage %s --into %s, or the next start creates an empty buffer (a new epoch)", ErrCorrupt, path, err, aside, aside, path)
		}
		if serr := b.salvagePending(path); serr != nil {
			return fmt.Errorf("%w: %s cannot be read (%v); it was moved aside to %s and kept: %w", ErrCorrupt, path, err, aside, serr)
		}
		if db, err = openBolt(path, b.o.LockTimeout); err != nil {
			return fmt.Errorf("open buffer %s after salvaging %s into it: %w", path, aside, err)
		}
	}
	b.db = db
	if b.o.Durability == Unsynced {
		db.NoSync = true
		db.NoGrowSync = true // else growing the file syncs what came before
		b.o.Logger.Warn("buffer in UNSYNCED durability mode: appends are acknowledged before fsync and the unsynced tail is LOST on a power loss; use it only for comparison")
		b.o.Events.Emit("unsynced-mode", "warning", "acknowledged records are lost on a power loss")
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		q, err := tx.CreateBucketIfNotExists(bQueue)
		if err != nil {
			return err
		}
		if e := meta.Get([]byte("epoch")); e != nil {
			b.epoch = string(e)
		} else {
			b.epoch = newEpoch()
			if err := meta.Put([]byte("epoch"), []byte(b.epoch)); err != nil {
				return err
			}
		}
		c := meta.Cursor()
		for k, v := c.Seek([]byte("seq/")); k != nil && len(k) > 4 && string(k[:4]) == "seq/"; k, v = c.Next() {
			b.seqs[string(k[4:])] = binary.BigEndian.Uint64(v)
		}
		qc := q.Cursor()
		if k, _ := qc.Last(); k != nil {
			b.next = binary.BigEndian.Uint64(k) + 1
		}
		if dead := tx.Bucket(bDead); dead != nil {
			b.st.DeadLettered = int64(dead.Stats().KeyN)
		}
		// What is queued (a backlog survives restarts): the counts kept
		// with the queue, or, in a database from before they were kept,
		// counted once.
		if meta.Get(kRecords) != nil {
			b.records, b.bytes = getCounts(meta)
		} else {
			for k, v := qc.First(); k != nil; k, v = qc.Next() {
				b.records++
				b.bytes += int64(len(v))
			}
			if err := putCounts(meta, b.records, b.bytes); err != nil {
				return err
			}
		}
		if _, v := qc.First(); v != nil {
			var r record.Record
			if json.Unmarshal(v, &r) == nil {
				b.oldest = r.Time
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("buffer %s: %w", path, err)
	}
	b.o.Events.Emit("opened", "path", path, "epoch", b.epoch, "records", b.records, "bytes", b.bytes)
	return nil
}

// salvagePending salvages into path every damaged copy of it moved aside
// and not yet salvaged, marking each done by its name (.salvaged): a start
// that dies halfway salvages it again next time, and keys already queued
// are not queued twice. One that cannot be salvaged is kept, reported
// loudly at every start, and does not stop the buffer from starting: new
// records must still be kept.
func (b *Buffer) salvagePending(path string) error {
	asides, _ := filepath.Glob(path + ".corrupt-*")
	for _, aside := range asides {
		if strings.HasSuffix(aside, ".salvaged") {
			continue
		}
		_, statErr := os.Stat(path)
		rep, err := Salvage(aside, path)
		if err != nil {
			if errors.Is(statErr, os.ErrNotExist) {
				_ = os.Remove(path) // only what this salvage began
			}
			msg := fmt.Sprintf("salvaging %s failed: %v; it is kept: try edgeguard buffer salvage %s --into %s", aside, err, aside, path)
			b.o.Logger.Error(msg)
			b.o.Events.Emit("salvage-failed", "aside", aside, "err", err.Error())
			continue
		}
		if err := os.Rename(aside, aside+".salvaged"); err != nil {
			return fmt.Errorf("salvaged %s but cannot mark it done (the next start would queue its records again, harmlessly): %w", aside, err)
		}
		b.o.Logger.Warn("the buffer database was damaged: what was readable in it is queued again", "aside", aside+".salvaged", "report", rep.String())
		b.o.Events.Emit("salvaged", "aside", aside+".salvaged", "records", rep.Records, "unreadablePages", rep.Unreadable, "report", rep.String())
	}
	return nil
}

// corruption marks an error that is about the file's content.
type corruption struct{ err error }

func (c corruption) Error() string { return c.err.Error() }
func (c corruption) Unwrap() error { return c.err }

// openBolt opens the file, telling damage to its content (invalid meta
// pages, checksums, a failed page check, bbolt's panics on some damage)
// from everything else.
func openBolt(path string, lock time.Duration) (db *bolt.DB, err error) {
	if lock <= 0 {
		lock = 5 * time.Second
	}
	defer func() {
		if r := recover(); r != nil {
			err = corruption{fmt.Errorf("bbolt: %v", r)}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lock})
	if err != nil {
		if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) || errors.Is(err, bolt.ErrVersionMismatch) {
			return nil, corruption{err}
		}
		return nil, err
	}
	// Touch every page once so a damaged file is found now, not mid-run.
	if cerr := db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			return e
		}
		return nil
	}); cerr != nil {
		db.Close()
		return nil, corruption{cerr}
	}
	return db, nil
}

// Epoch names this buffer database in idempotency keys.
func (b *Buffer) Epoch() string { return b.epoch }

// Append stores the inputs and returns once they are durable (Disk) or
// queued (Memory), in the order given. Under Block, a buffer at its bound
// refuses the whole call with ErrFull; an error means nothing of the call
// was stored.
func (b *Buffer) Append(ctx context.Context, in ...Input) ([]Receipt, error) {
	if len(in) == 0 {
		return nil, errors.New("nothing to append: give at least one record")
	}
	if err := b.failure(); err != nil {
		return nil, err
	}
	// A record the sink could never store, or whose stream name JSON
	// would rewrite into another's, is refused here, alone: inside a
	// group commit it would fail every append it was grouped with.
	for i, r := range in {
		if err := record.ValidStream(r.Stream); err != nil {
			return nil, fmt.Errorf("record %d: %w: %w", i, ErrInvalid, err)
		}
		// JSON would rewrite invalid UTF-8, and the sink's copy would no
		// longer hash as the receipt says.
		for k, v := range r.Meta {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("record %d: %w: metadata %q is not valid UTF-8", i, ErrInvalid, k)
			}
		}
		// What the sink takes in one batch, base64 and all.
		if len(r.Payload) > MaxPayload {
			return nil, fmt.Errorf("record %d: %w: a payload of %d bytes: at most %d", i, ErrInvalid, len(r.Payload), MaxPayload)
		}
	}
	req := &appendReq{in: in, done: make(chan struct{})}
	select {
	case b.reqs <- req:
	case <-b.quit:
		return nil, errors.New("buffer closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the outcome is waited for whatever ctx says: a commit
	// takes bounded time, and answering "not confirmed" for a record that
	// is then stored would make a retrying producer store it twice.
	select {
	case <-req.done:
		return req.out, req.err
	case <-b.quit:
		// Closing: the committer finishes what it took; anything it did
		// not take was not stored.
		b.wg.Wait()
		select {
		case <-req.done:
			return req.out, req.err
		default:
			return nil, errors.New("buffer closed; the append was not stored")
		}
	}
}

// committer turns queued appends into as few commits as possible: it
// takes what has accumulated while the previous commit was syncing (group
// commit), without waiting for more.
func (b *Buffer) committer() {
	defer b.wg.Done()
	const maxGroup = 4096
	for {
		var group []*appendReq
		select {
		case r := <-b.reqs:
			group = append(group, r)
		case <-b.quit:
			return
		}
		n := len(group[0].in)
	more:
		for n < maxGroup {
			select {
			case r := <-b.reqs:
				group = append(group, r)
				n += len(r.in)
			default:
				break more
			}
		}
		b.commit(group)
		for _, r := range group {
			close(r.done)
		}
	}
}
