package buffer

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	bolt "go.etcd.io/bbolt"
)

// SalvageReport says what Salvage recovered from a damaged database and
// what it could not account for.
type SalvageReport struct {
	From, Into string
	// Pages is how many bbolt pages were read; Unreadable how many page
	// slots were damaged (a header that is not the page's own, or elements
	// that do not fit).
	Pages, Unreadable int
	// Records and Bytes were queued into the new buffer; Already were
	// queued there before (a second salvage of the same file).
	Records, Already int
	Bytes            int64
	Streams          []SalvagedStream
}

// SalvagedStream is what was found of one stream of the damaged buffer.
type SalvagedStream struct {
	Node   string `json:"node"`
	Epoch  string `json:"epoch"`
	Stream string `json:"stream"`
	Count  int    `json:"count"`
	First  uint64 `json:"firstSeq"`
	Last   uint64 `json:"lastSeq"`
	// Missing are the sequence ranges between First and Assigned that
	// were not found: delivered before the damage, or lost with it. The
	// sink's summary of this node, epoch and stream tells which.
	Missing [][2]uint64 `json:"missing,omitempty"`
	// Assigned is the highest sequence number the buffer had handed out
	// on this stream, where a copy of its counter was readable; 0 if not.
	Assigned uint64 `json:"assigned,omitempty"`
}

// String is the report as a reader wants it.
func (r SalvageReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "salvaged %d records (%d bytes) from %s into %s; %d pages read, %d unreadable", r.Records, r.Bytes, r.From, r.Into, r.Pages, r.Unreadable)
	if r.Already > 0 {
		fmt.Fprintf(&b, "; %d were queued there already", r.Already)
	}
	for _, s := range r.Streams {
		fmt.Fprintf(&b, "\n  %s/%s/%s: %d records, seq %d-%d", s.Node, s.Epoch, s.Stream, s.Count, s.First, s.Last)
		if s.Assigned > 0 {
			fmt.Fprintf(&b, " of %d handed out", s.Assigned)
		}
		if len(s.Missing) > 0 {
			fmt.Fprintf(&b, "; not found: %s (delivered before the damage, or lost: the sink's summary tells which)", ranges(s.Missing))
		}
	}
	return b.String()
}

func ranges(rs [][2]uint64) string {
	var parts []string
	for _, r := range rs {
		if r[0] == r[1] {
			parts = append(parts, fmt.Sprint(r[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(parts, ", ")
}

// bbolt's on-disk layout, as far as salvage reads it: every page starts
// with a 16-byte header (id, flags, count, overflow) whose id is its own
// offset in pages; a leaf page's header is followed by count 16-byte
// elements (flags, pos, ksize, vsize), pos counted from the element
// itself. Integers are in the machine's order, little-endian on every
// platform edgeguard ships for.
const (
	pageHeader   = 16
	leafElement  = 16
	leafPageFlag = 0x02
	bucketLeaf   = 0x01
	// maxSpan bounds what one page with its overflow may claim: a record
	// is at most a 16 MiB payload, base64 in JSON.
	maxSpan = 32 << 20
	// batchBytes bounds one transaction of the salvaged queue.
	batchBytes = 8 << 20
)

// Salvage reads every page of the damaged buffer database at from that
// can still be parsed, without trusting its meta pages, freelist or
// branch pages, and queues each record found in the buffer database at
// into under its original key (node, epoch, stream, seq), in sequence
// order per stream, for the next forwarder to deliver. into must not be
// open elsewhere (bbolt's file lock makes sure; the call waits up to 5 s).
// Records already queued in into are not queued again, so a salvage cut
// short can be run again.
//
// A page freed by an older transaction may still hold records the buffer
// delivered before the damage: they are queued too, and the sink refuses
// them as duplicates (same key, same content), never storing them twice.
// Records found in the dead-letter bucket are not queued again; records
// the drop-oldest policy dropped can come back (the sink then counts them
// out of order).
func Salvage(from, into string) (SalvageReport, error) {
	rep := SalvageReport{From: from, Into: into}
	f, err := os.Open(from)
	if err != nil {
		return rep, fmt.Errorf("salvage: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("salvage: %w", err)
	}
	if ti, err := os.Stat(into); err == nil && os.SameFile(fi, ti) {
		return rep, fmt.Errorf("salvage: %s is the damaged file itself: give the buffer to queue into (serve's --buffer)", into)
	}
	sc := &scan{f: f, size: fi.Size(), found: map[string]located{}, assigned: map[string]uint64{}, dead: map[string]bool{}, epochs: map[string]bool{}}
	if err := sc.pages(&rep); err != nil {
		return rep, fmt.Errorf("salvage %s: %w", from, err)
	}
	if rep.Pages == 0 {
		return rep, fmt.Errorf("salvage %s: not a buffer database (%d bytes, no bbolt page in it)", from, fi.Size())
	}
	for k := range sc.dead {
		delete(sc.found, k)
	}
	keys := make([]located, 0, len(sc.found))
	for _, l := range sc.found {
		keys = append(keys, l)
	}
	slices.SortFunc(keys, func(a, b located) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	if err := sc.queue(into, keys, &rep); err != nil {
		return rep, err
	}
	// Per stream: what was found, what is missing up to what had been
	// handed out (known for the file's own epoch only).
	epoch := ""
	if len(sc.epochs) == 1 {
		for e := range sc.epochs {
			epoch = e
		}
	}
	var cur *SalvagedStream
	for _, r := range keys {
		if cur == nil || cur.Node+"/"+cur.Epoch+"/"+cur.Stream != r.id {
			rep.Streams = append(rep.Streams, SalvagedStream{Node: r.node, Epoch: r.epoch, Stream: r.stream, First: r.seq})
			cur = &rep.Streams[len(rep.Streams)-1]
			if r.seq > 1 {
				cur.Missing = append(cur.Missing, [2]uint64{1, r.seq - 1})
			}
		} else if r.seq > cur.Last+1 {
			cur.Missing = append(cur.Missing, [2]uint64{cur.Last + 1, r.seq - 1})
		}
		cur.Last = r.seq
		cur.Count++
	}
	for i := range rep.Streams {
		s := &rep.Streams[i]
		if s.Epoch != epoch {
			continue
		}
		s.Assigned = sc.assigned[s.Stream]
		if s.Assigned > s.Last {
			s.Missing = append(s.Missing, [2]uint64{s.Last + 1, s.Assigned})
		}
	}
	return rep, nil
}

// located is where a record was found: its value is read again when it is
// queued, so a large buffer is never held in memory whole.
type located struct {
	id                  string // node/epoch/stream
	node, epoch, stream string
	seq                 uint64
	at                  int64 // the value's offset in the file
	n                   int
}

type scan struct {
	f        *os.File
	size     int64
	ps       int64
	found    map[string]located
	assigned map[string]uint64 // stream -> highest seq handed out (the file's own epoch)
	epochs   map[string]bool   // the file's epoch, as its meta bucket says
	dead     map[string]bool   // keys of dead-lettered records
}

// pages reads the file page by page.
func (sc *scan) pages(rep *SalvageReport) error {
	sc.ps = sc.pageSize()
	hdr := make([]byte, pageHeader)
	for off := int64(0); off+pageHeader <= sc.size; {
		if _, err := sc.f.ReadAt(hdr, off); err != nil {
			return err
		}
		id := binary.LittleEndian.Uint64(hdr[0:8])
		flags := binary.LittleEndian.Uint16(hdr[8:10])
		count := int(binary.LittleEndian.Uint16(hdr[10:12]))
		overflow := int64(binary.LittleEndian.Uint32(hdr[12:16]))
		if id != uint64(off/sc.ps) {
			// Not the start of a page: never written (zeros), or damaged.
			if id != 0 || flags != 0 || count != 0 || overflow != 0 {
				rep.Unreadable++
			}
			off += sc.ps
			continue
		}
		rep.Pages++
		span := (overflow + 1) * sc.ps
		if overflow < 0 || span > maxSpan || off+span > sc.size {
			rep.Unreadable++
			off += sc.ps
			continue
		}
		if flags == leafPageFlag && count > 0 {
			page := make([]byte, span)
			if _, err := sc.f.ReadAt(page, off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if !sc.leaf(page, off, count, true) {
				rep.Unreadable++
				off += sc.ps // its overflow count is not to be trusted either
				continue
			}
		}
		off += span // past its overflow pages, whatever its type
	}
	return nil
}

// pageSize is the size whose page ids match their offsets best, among the
// sizes bbolt uses (the OS page size): a damaged meta page cannot mislead it.
func (sc *scan) pageSize() int64 {
	best, score := int64(4096), -1
	hdr := make([]byte, 8)
	for _, ps := range []int64{4096, 16384, 65536} {
		n := 0
		for i := int64(1); i < 64 && i*ps+8 <= sc.size; i++ {
			if _, err := sc.f.ReadAt(hdr, i*ps); err == nil && binary.LittleEndian.Uint64(hdr) == uint64(i) {
				n++
			}
		}
		if n > score {
			best, score = ps, n
		}
	}
	return best
}

// leaf parses one leaf page (at file offset base: values are read again
// from there), noting what it holds:
// queue records (8-byte key, a record whose key is its own), dead letters,
// and the meta bucket's epoch and sequence counters. An inline bucket (the
// meta one) is read one level deep, as the buffer never nests them. It
// says false for a page whose elements do not fit in it.
func (sc *scan) leaf(page []byte, base int64, count int, top bool) bool {
	if pageHeader+count*leafElement > len(page) {
		return false
	}
	for i := 0; i < count; i++ {
		e := pageHeader + i*leafElement
		flags := binary.LittleEndian.Uint32(page[e:])
		pos := int64(binary.LittleEndian.Uint32(page[e+4:]))
		ks := int64(binary.LittleEndian.Uint32(page[e+8:]))
		vs := int64(binary.LittleEndian.Uint32(page[e+12:]))
		k0 := int64(e) + pos
		if k0+ks+vs > int64(len(page)) {
			return false
		}
		k, v := page[k0:k0+ks], page[k0+ks:k0+ks+vs]
		if flags&bucketLeaf != 0 {
			// A small bucket is stored inline: a 16-byte header with root
			// page 0, then its one leaf page.
			if top && vs > 16+pageHeader && binary.LittleEndian.Uint64(v[0:8]) == 0 {
				in := v[16:]
				if binary.LittleEndian.Uint16(in[8:10]) == leafPageFlag {
					sc.leaf(in, base+k0+ks+16, int(binary.LittleEndian.Uint16(in[10:12])), false)
				}
			}
			continue
		}
		switch {
		case string(k) == "epoch" && vs > 0 && vs <= record.MaxEpoch:
			if record.ValidEpoch(string(v)) == nil {
				sc.epochs[string(v)] = true
			}
		case ks > 4 && bytes.HasPrefix(k, []byte("seq/")) && vs == 8:
			s := string(k[4:])
			sc.assigned[s] = max(sc.assigned[s], binary.BigEndian.Uint64(v))
		case ks == 8 && vs > 0 && v[0] == '{':
			var r record.Record
			if json.Unmarshal(v, &r) != nil || r.Check() != nil {
				// A dead letter ({reason, record}) names a record that must
				// not be queued again.
				var d struct {
					Record *record.Record `json:"record"`
				}
				if json.Unmarshal(v, &d) == nil && d.Record != nil && d.Record.Key != "" {
					sc.dead[d.Record.Key] = true
				}
				continue
			}
			if _, ok := sc.found[r.Key]; !ok {
				sc.found[r.Key] = located{id: r.Node + "/" + r.Epoch + "/" + r.Stream, node: r.Node, epoch: r.Epoch, stream: r.Stream, seq: r.Seq, at: base + k0 + ks, n: int(vs)}
			}
		}
	}
	return true
}

// queue appends the records to into's queue, skipping keys it holds
// already, in transactions of at most batchBytes, keeping its counts.
func (sc *scan) queue(into string, recs []located, rep *SalvageReport) error {
	db, err := bolt.Open(into, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("salvage into %s: another process has it open (an edgeguard serve with this --buffer?): stop it first", into)
	}
	if err != nil {
		return fmt.Errorf("salvage into %s: %w", into, err)
	}
	defer db.Close()
	have := map[string]bool{}
	var next uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bMeta); err != nil {
			return err
		}
		q, err := tx.CreateBucketIfNotExists(bQueue)
		if err != nil {
			return err
		}
		c := q.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r struct {
				Key string `json:"key"`
			}
			if json.Unmarshal(v, &r) == nil {
				have[r.Key] = true
			}
			next = binary.BigEndian.Uint64(k) + 1
		}
		return nil
	}); err != nil {
		return fmt.Errorf("salvage into %s: %w", into, err)
	}
	for len(recs) > 0 {
		var batch [][]byte
		size := 0
		for len(recs) > 0 && (size == 0 || size+recs[0].n <= batchBytes) {
			r := recs[0]
			recs = recs[1:]
			key := record.Key(r.node, r.epoch, r.stream, r.seq)
			if have[key] {
				rep.Already++
				continue
			}
			v := make([]byte, r.n)
			if _, err := sc.f.ReadAt(v, r.at); err != nil {
				return fmt.Errorf("salvage: re-reading %s: %w", key, err)
			}
			batch = append(batch, v)
			size += r.n
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			meta, q := tx.Bucket(bMeta), tx.Bucket(bQueue)
			records, bytes := getCounts(meta)
			if meta.Get(kRecords) == nil {
				records, bytes = int64(q.Stats().KeyN), 0
				_ = q.ForEach(func(_, v []byte) error { bytes += int64(len(v)); return nil })
			}
			for _, v := range batch {
				if err := q.Put(u64(next), v); err != nil {
					return err
				}
				next++
				records++
				bytes += int64(len(v))
			}
			return putCounts(meta, records, bytes)
		}); err != nil {
			return fmt.Errorf("salvage into %s: %w", into, err)
		}
		rep.Records += len(batch)
		rep.Bytes += int64(size)
	}
	return nil
}
