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
	// Pages is how many pages were read; Unreadable how many of them were
	// damaged (no page type bbolt writes, or elements that do not fit).
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
// with a 16-byte header (id, flags, count, overflow), a leaf page's header
// is followed by count 16-byte elements (flags, pos, ksize, vsize), pos
// counted from the element itself. Integers are in the machine's order,
// little-endian on every platform edgeguard ships for.
const (
	pageHeader   = 16
	leafElement  = 16
	leafPageFlag = 0x02
	bucketLeaf   = 0x01
	boltMagic    = 0xED0CDAED
)

// Salvage reads every page of the damaged buffer database at from that
// can still be parsed, without trusting its meta pages, freelist or
// branch pages, and queues each record found in the buffer database at
// into under its original key (node, epoch, stream, seq), in sequence
// order per stream, for the next forwarder to deliver. into must not be
// open elsewhere (bbolt's file lock makes sure; the call waits up to 5 s).
//
// A page freed by an older transaction may still hold records the
// buffer delivered before the damage: they are queued too, and the sink
// refuses them as duplicates (same key, same content), never storing them
// twice. Records of from's dead-letter bucket are not queued again.
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
	found, assigned, err := scanPages(f, fi.Size(), &rep)
	if err != nil {
		return rep, fmt.Errorf("salvage %s: %w", from, err)
	}
	if len(found) == 0 && rep.Pages == 0 {
		return rep, fmt.Errorf("salvage %s: not a buffer database (%d bytes, no page read)", from, fi.Size())
	}
	recs := make([]*record.Record, 0, len(found))
	for _, r := range found {
		recs = append(recs, r.rec)
	}
	slices.SortFunc(recs, func(a, b *record.Record) int {
		if c := strings.Compare(a.Node+"/"+a.Epoch+"/"+a.Stream, b.Node+"/"+b.Epoch+"/"+b.Stream); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if err := queueSalvaged(into, recs, found, &rep); err != nil {
		return rep, err
	}
	// Per stream: what was found, what is missing up to what had been
	// handed out.
	var cur *SalvagedStream
	for _, r := range recs {
		if cur == nil || cur.Node != r.Node || cur.Epoch != r.Epoch || cur.Stream != r.Stream {
			rep.Streams = append(rep.Streams, SalvagedStream{Node: r.Node, Epoch: r.Epoch, Stream: r.Stream, First: r.Seq})
			cur = &rep.Streams[len(rep.Streams)-1]
			if r.Seq > 1 {
				cur.Missing = append(cur.Missing, [2]uint64{1, r.Seq - 1})
			}
		} else if r.Seq > cur.Last+1 {
			cur.Missing = append(cur.Missing, [2]uint64{cur.Last + 1, r.Seq - 1})
		}
		cur.Last = r.Seq
		cur.Count++
	}
	for i := range rep.Streams {
		s := &rep.Streams[i]
		s.Assigned = assigned[s.Stream]
		if s.Assigned > s.Last {
			s.Missing = append(s.Missing, [2]uint64{s.Last + 1, s.Assigned})
		}
	}
	return rep, nil
}

type salvaged struct {
	rec *record.Record
	raw []byte
}

// scanPages reads the file page by page and returns every record found
// (by key; the first copy wins, copies of one record are identical) and
// the highest sequence counter seen per stream.
func scanPages(f io.ReaderAt, size int64, rep *SalvageReport) (map[string]salvaged, map[string]uint64, error) {
	ps := pageSize(f)
	found := map[string]salvaged{}
	assigned := map[string]uint64{}
	hdr := make([]byte, pageHeader)
	for off := int64(0); off+pageHeader <= size; {
		rep.Pages++
		if _, err := f.ReadAt(hdr, off); err != nil {
			return nil, nil, err
		}
		flags := binary.LittleEndian.Uint16(hdr[8:10])
		count := int(binary.LittleEndian.Uint16(hdr[10:12]))
		overflow := int64(binary.LittleEndian.Uint32(hdr[12:16]))
		span := ps
		if flags == leafPageFlag && overflow > 0 && off+(overflow+1)*ps <= size {
			span = (overflow + 1) * ps
		}
		if flags != leafPageFlag || count == 0 {
			switch flags {
			case 0, 0x01, leafPageFlag, 0x04, 0x10: // never written, branch, empty leaf, meta, freelist
			default:
				rep.Unreadable++
			}
			off += ps
			continue
		}
		page := make([]byte, min(span, size-off))
		if _, err := f.ReadAt(page, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, err
		}
		if !leafRecords(page, count, found, assigned) {
			rep.Unreadable++
			off += ps // a damaged header: its overflow count is not to be trusted either
			continue
		}
		off += span
	}
	return found, assigned, nil
}

// pageSize is what a readable meta page says, else the usual 4 KiB.
func pageSize(f io.ReaderAt) int64 {
	for _, at := range []int64{0, 4096, 16384, 65536} {
		b := make([]byte, pageHeader+12)
		if _, err := f.ReadAt(b, at); err != nil {
			continue
		}
		m := b[pageHeader:]
		if binary.LittleEndian.Uint32(m[0:4]) != boltMagic {
			continue
		}
		ps := int64(binary.LittleEndian.Uint32(m[8:12]))
		if ps >= 512 && ps <= 1<<20 && ps&(ps-1) == 0 {
			return ps
		}
	}
	return 4096
}

// leafRecords parses one leaf page, adding what it holds: queue records
// (8-byte key, a record whose key is its own) and sequence counters
// ("seq/<stream>", 8 bytes). It says false for a page whose elements do
// not fit in it.
func leafRecords(page []byte, count int, found map[string]salvaged, assigned map[string]uint64) bool {
	if pageHeader+count*leafElement > len(page) {
		return false
	}
	for i := 0; i < count; i++ {
		e := pageHeader + i*leafElement
		flags := binary.LittleEndian.Uint32(page[e:])
		pos := int(binary.LittleEndian.Uint32(page[e+4:]))
		ks := int(binary.LittleEndian.Uint32(page[e+8:]))
		vs := int(binary.LittleEndian.Uint32(page[e+12:]))
		k0 := e + pos
		if pos < 0 || ks < 0 || vs < 0 || k0+ks+vs > len(page) || k0+ks+vs < k0 {
			return false
		}
		k, v := page[k0:k0+ks], page[k0+ks:k0+ks+vs]
		if flags&bucketLeaf != 0 {
			// A small bucket (the meta one, with the sequence counters)
			// is stored inline: a 16-byte header with root page 0, then
			// its one leaf page.
			if vs > 16+pageHeader && binary.LittleEndian.Uint64(v[0:8]) == 0 {
				in := v[16:]
				if binary.LittleEndian.Uint16(in[8:10]) == leafPageFlag {
					leafRecords(in, int(binary.LittleEndian.Uint16(in[10:12])), found, assigned)
				}
			}
			continue
		}
		switch {
		case ks > 4 && bytes.HasPrefix(k, []byte("seq/")) && vs == 8:
			s := string(k[4:])
			assigned[s] = max(assigned[s], binary.BigEndian.Uint64(v))
		case ks == 8 && vs > 0 && v[0] == '{':
			var r record.Record
			if json.Unmarshal(v, &r) != nil || r.Check() != nil || r.Key != record.Key(r.Node, r.Epoch, r.Stream, r.Seq) {
				continue // a dead letter, or not a record
			}
			if _, ok := found[r.Key]; !ok {
				found[r.Key] = salvaged{rec: &r, raw: append([]byte(nil), v...)}
			}
		}
	}
	return true
}

// queueSalvaged appends the records to into's queue (skipping keys it
// holds already) in one transaction, keeping its counts.
func queueSalvaged(into string, recs []*record.Record, found map[string]salvaged, rep *SalvageReport) error {
	db, err := bolt.Open(into, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("salvage into %s: %w", into, err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		q, err := tx.CreateBucketIfNotExists(bQueue)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		c := q.Cursor()
		var next uint64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r struct {
				Key string `json:"key"`
			}
			if json.Unmarshal(v, &r) == nil {
				have[r.Key] = true
			}
			next = binary.BigEndian.Uint64(k) + 1
		}
		records, size := getCounts(meta)
		if meta.Get(kRecords) == nil {
			records, size = int64(q.Stats().KeyN), 0
			_ = q.ForEach(func(_, v []byte) error { size += int64(len(v)); return nil })
		}
		for _, r := range recs {
			if have[r.Key] {
				rep.Already++
				continue
			}
			raw := found[r.Key].raw
			if err := q.Put(u64(next), raw); err != nil {
				return fmt.Errorf("salvage into %s: %w", into, err)
			}
			next++
			records++
			size += int64(len(raw))
			rep.Records++
			rep.Bytes += int64(len(raw))
		}
		return putCounts(meta, records, size)
	})
}
