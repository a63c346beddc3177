package buffer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/record"
	bolt "go.etcd.io/bbolt"
)

// Records posted to the sink under keys a real buffer will use (the epoch
// is public in the sink's summary) do not delete the real records: the
// sink calls the real ones conflicts, not duplicates, and the forwarder
// keeps them and retries.
func TestForgedRecordsDoNotDeleteRealOnes(t *testing.T) {
	s, srv := openSink(t)
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var forged record.Batch
	for seq := uint64(1); seq <= 3; seq++ {
		forged.Records = append(forged.Records, record.Record{Key: record.Key("edge1", b.Epoch(), "pos", seq), Node: "edge1", Epoch: b.Epoch(), Stream: "pos", Seq: seq, Payload: []byte("forged")})
	}
	body, _ := json.Marshal(forged)
	resp, err := http.Post(srv.URL+"/v1/batches", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var receipts []buffer.Receipt
	for i := 0; i < 3; i++ {
		rc, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("real sale")})
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, rc...)
	}
	go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().LastError == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := b.Stats()
	if st.Records != 3 || st.Forwarded != 0 {
		t.Fatalf("the real sales left the buffer: %+v", st)
	}
	if !strings.Contains(st.LastError, "409") {
		t.Errorf("last error %q, want the sink's 409", st.LastError)
	}
	sum, _ := s.Summary()
	if len(sum) != 1 || sum[0].Conflicts < 3 || sum[0].Duplicates != 0 {
		t.Errorf("sink summary %+v: want the real records counted as conflicts", sum)
	}
	// What the validator sees: the keys are covered, the content is not
	// what was acknowledged.
	held, err := s.Hashes("edge1", b.Epoch(), "pos", 0, 10)
	if err != nil || len(held.Hashes) != 3 {
		t.Fatalf("sink hashes %+v, %v", held, err)
	}
	for i, h := range held.Hashes {
		if h.Hash == "" || h.Hash == receipts[i].Hash {
			t.Errorf("seq %d: sink holds %q, acknowledged %q: want them to differ", h.Seq, h.Hash, receipts[i].Hash)
		}
	}
}

// The receipt's content hash is what the sink keeps under the key, page
// by page, for records with and without metadata or payload.
func TestReceiptHashIsWhatTheSinkHolds(t *testing.T) {
	s, srv := openSink(t)
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	receipts, err := b.Append(ctx,
		buffer.Input{Stream: "pos", Payload: []byte("sale 1")},
		buffer.Input{Stream: "pos", Meta: map[string]string{"till": "3", "a": "b"}, Payload: []byte("sale 2")},
		buffer.Input{Stream: "pos", Meta: map[string]string{}},
		buffer.Input{Stream: "pos", Payload: []byte("sale 2")})
	if err != nil {
		t.Fatal(err)
	}
	go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Forwarded < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.Stats(); st.Forwarded != 4 {
		t.Fatalf("forwarded %d of 4: %+v", st.Forwarded, st)
	}
	var held []record.SeqHash
	var after uint64
	for {
		page, err := s.Hashes("edge1", b.Epoch(), "pos", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, page.Hashes...)
		if !page.More {
			break
		}
		after = page.Hashes[len(page.Hashes)-1].Seq
	}
	if len(held) != 4 {
		t.Fatalf("sink holds %d hashes, want 4: %+v", len(held), held)
	}
	seen := map[string]bool{}
	for i, h := range held {
		if h.Seq != receipts[i].Seq || h.Hash != receipts[i].Hash || len(h.Hash) != 64 {
			t.Errorf("seq %d hash %q; receipt %d %q", h.Seq, h.Hash, receipts[i].Seq, receipts[i].Hash)
		}
		seen[h.Hash] = true
	}
	if len(seen) != 4 {
		t.Errorf("%d distinct hashes for 4 different records", len(seen))
	}
}

// A record the sink can never store (appended before names were checked)
// is moved aside, counted, and the records behind it are delivered.
func TestUnstorableRecordIsDeadLettered(t *testing.T) {
	s, srv := openSink(t)
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	epoch := b.Epoch()
	for i := 0; i < 2; i++ {
		if _, err := b.Append(context.Background(), buffer.Input{Stream: "pos", Payload: []byte("sale")}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	// Put a record with a 32 750-byte stream name at the head of the
	// queue, as an older edgeguard would have accepted it.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("s", 32750)
	bad, _ := json.Marshal(record.Record{Key: record.Key("n1", epoch, long, 1), Node: "n1", Epoch: epoch, Stream: long, Seq: 1, Payload: []byte("x")})
	err = db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket([]byte("queue"))
		var keys, vals [][]byte
		_ = q.ForEach(func(k, v []byte) error {
			keys, vals = append(keys, append([]byte(nil), k...)), append(vals, append([]byte(nil), v...))
			return nil
		})
		for _, k := range keys {
			if err := q.Delete(k); err != nil {
				return err
			}
		}
		key := func(n uint64) []byte { k := make([]byte, 8); binary.BigEndian.PutUint64(k, n); return k }
		if err := q.Put(key(100), bad); err != nil {
			return err
		}
		for i, v := range vals {
			if err := q.Put(key(101+uint64(i)), v); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		_ = meta.Delete([]byte("n/records")) // counted again at open
		return meta.Delete([]byte("n/bytes"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err = buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Records != 3 {
		t.Fatalf("reopened with %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	drain(t, b, 10*time.Second)
	st := b.Stats()
	if st.DeadLettered != 1 || st.Forwarded != 2 {
		t.Errorf("stats %+v: want 1 dead-lettered, 2 forwarded", st)
	}
	sum, _ := s.Summary()
	if len(sum) != 1 || sum[0].Count != 2 {
		t.Errorf("sink %+v: want the two good records", sum)
	}
	b.Close()
	// The count survives a restart.
	b2, err := buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if got := b2.Stats().DeadLettered; got != 1 {
		t.Errorf("after reopening, %d dead-lettered", got)
	}
}

// A commit that fails for a reason other than a full disk (here: writes
// to the database file fail) may still have reached the disk, so the
// buffer stops taking records and says so (Failed), instead of handing
// out sequence numbers the disk may already hold. Reopened, it goes on
// from what the disk says.
func TestFailedCommitStopsTheBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	// Make the database's descriptor read-only under bbolt's feet: its
	// next write fails (EBADF), as a failing disk would make it.
	fds, _ := os.ReadDir("/proc/self/fd")
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	swapped := false
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); target == path {
			n, _ := strconv.Atoi(fd.Name())
			if err := syscall.Dup2(int(devnull.Fd()), n); err != nil {
				t.Fatal(err)
			}
			swapped = true
		}
	}
	if !swapped {
		t.Fatal("the database's descriptor was not found")
	}
	if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("2")}); err == nil {
		t.Fatal("an append succeeded on a database that cannot be written")
	}
	select {
	case <-b.Failed():
	case <-time.After(time.Second):
		t.Fatal("Failed did not fire")
	}
	if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("3")}); !errors.Is(err, buffer.ErrFailed) {
		t.Fatalf("append after the failure: %v, want ErrFailed", err)
	}
	b.Close()
	b, err = buffer.Open(path, buffer.Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("4")})
	if err != nil || r[0].Seq != 2 {
		t.Fatalf("after reopening: %+v %v, want seq 2", r, err)
	}
}

// Metadata that is not UTF-8 would be rewritten on its way into JSON, so
// the sink's copy would not hash as the receipt says: refused at append.
func TestMetaMustBeUTF8(t *testing.T) {
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Append(context.Background(), buffer.Input{Stream: "pos", Meta: map[string]string{"till": "\xff"}, Payload: []byte("sale")})
	if !errors.Is(err, buffer.ErrInvalid) || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Fatalf("append with metadata not UTF-8: %v", err)
	}
	if st := b.Stats(); st.Records != 0 {
		t.Fatalf("stored %d records", st.Records)
	}
}
