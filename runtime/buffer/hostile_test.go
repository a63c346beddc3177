package buffer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
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
	for i := 0; i < 3; i++ {
		if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("real sale")}); err != nil {
			t.Fatal(err)
		}
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
