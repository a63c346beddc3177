package buffer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
)

// A buffer whose meta pages and one record page are damaged: the start
// moves it aside, salvage queues every record on a readable page into the
// new buffer under its original key, names the range it could not find,
// and the forwarder delivers the salvaged records exactly once.
func TestSalvageRecoversReadablePages(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 400
	for i := 1; i <= n; i++ {
		if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte(fmt.Sprintf("sale %04d %s", i, strings.Repeat("x", 200)))}); err != nil {
			t.Fatal(err)
		}
	}
	epoch := b.Epoch()
	b.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Both meta pages, and the page that holds record 200.
	for i := 0; i < 8192; i++ {
		data[i] ^= 0x5a
	}
	// Every copy of it (a freed page may hold an older one).
	for off := 0; ; {
		at := bytes.Index(data[off:], []byte(`"seq":200,`))
		if at < 0 {
			break
		}
		page := (off + at) / 4096 * 4096
		for i := page; i < page+4096; i++ {
			data[i] = 0xa5
		}
		off = page + 4096
	}
	if bytes.Contains(data, []byte(`"seq":200,`)) {
		t.Fatal("record 200 still in the file")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = buffer.Open(path, buffer.Options{Node: "edge1"})
	if !errors.Is(err, buffer.ErrCorrupt) {
		t.Fatalf("open of the damaged file: %v", err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("kept aside: %v", aside)
	}
	rep, err := buffer.Salvage(aside[0], path)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Unreadable < 1 {
		t.Errorf("the scribbled page was not counted unreadable: %+v", rep)
	}
	if len(rep.Streams) != 1 {
		t.Fatalf("streams %+v", rep.Streams)
	}
	s := rep.Streams[0]
	lost := n - s.Count
	// A 4 KiB page holds ~14 of these records; the damaged one, and no
	// other, is missing.
	if s.Node != "edge1" || s.Epoch != epoch || s.First != 1 || s.Last != n || lost < 1 || lost > 20 {
		t.Fatalf("salvaged %+v: want seq 1-%d of epoch %s less one page", s, n, epoch)
	}
	if len(s.Missing) != 1 || s.Missing[0][0] > 200 || s.Missing[0][1] < 200 || s.Assigned != n {
		t.Errorf("missing %v, assigned %d: want one range around 200", s.Missing, s.Assigned)
	}
	if !strings.Contains(rep.String(), "not found: ") {
		t.Errorf("the report does not name what was not found:\n%s", rep)
	}
	// Salvaging the same file again queues nothing twice.
	again, err := buffer.Salvage(aside[0], path)
	if err != nil || again.Records != 0 || again.Already != s.Count {
		t.Fatalf("second salvage: %+v, %v", again, err)
	}

	// The new buffer (a new epoch) delivers the salvaged records under
	// their own keys, then its own.
	snk, srv := openSink(t)
	b, err = buffer.Open(path, buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Epoch() == epoch {
		t.Fatal("the new buffer kept the damaged one's epoch")
	}
	if st := b.Stats(); st.Records != int64(s.Count) {
		t.Fatalf("the new buffer holds %d records, want the %d salvaged", st.Records, s.Count)
	}
	if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	go b.Forward(ctx, buffer.ForwardOptions{Sink: srv.URL, Link: newLink(true)})
	drain(t, b, 10*time.Second)
	sum, err := snk.Summary()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, st := range sum {
		if st.Duplicates != 0 || st.OutOfOrder != 0 {
			t.Errorf("stream %+v", st)
		}
		got[st.Epoch] = st.Count
	}
	if got[epoch] != uint64(s.Count) || got[b.Epoch()] != 1 {
		t.Errorf("the sink holds %v, want %d of epoch %s and 1 of %s", got, s.Count, epoch, b.Epoch())
	}
}

// Salvage refuses what is not a buffer and names it.
func TestSalvageRefusesNonsense(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := buffer.Salvage(empty, filepath.Join(dir, "into.db")); err == nil || !strings.Contains(err.Error(), "not a buffer database") {
		t.Fatalf("salvage of an empty file: %v", err)
	}
	if _, err := buffer.Salvage(filepath.Join(dir, "nope"), filepath.Join(dir, "into.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("salvage of a missing file: %v", err)
	}
}

// Salvage reads files that are damaged by definition: no input makes it
// panic, and whatever it queues is a valid record.
func FuzzSalvage(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.db")
	b, err := buffer.Open(seed, buffer.Options{Node: "edge1"})
	if err != nil {
		f.Fatal(err)
	}
	_, _ = b.Append(context.Background(), buffer.Input{Stream: "pos", Payload: []byte("sale")}, buffer.Input{Stream: "t", Meta: map[string]string{"a": "b"}})
	b.Close()
	data, _ := os.ReadFile(seed)
	f.Add(data)
	f.Add(data[:4096*3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		from, into := filepath.Join(dir, "from"), filepath.Join(dir, "into.db")
		if err := os.WriteFile(from, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := buffer.Salvage(from, into)
		if err != nil {
			return
		}
		for _, s := range rep.Streams {
			if s.Count == 0 || s.First > s.Last {
				t.Fatalf("stream %+v", s)
			}
		}
	})
}

// With Options.Salvage, a start on a damaged file carries on with what
// was readable queued again, and keeps the damaged file aside.
func TestOpenSalvages(t *testing.T) {
	for _, n := range []int{3, 50} { // 3: the queue is an inline bucket
		t.Run(fmt.Sprint(n), func(t *testing.T) { openSalvages(t, n) })
	}
}

func openSalvages(t *testing.T, n int) {
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := b.Append(context.Background(), buffer.Input{Stream: "pos", Payload: []byte("sale")}); err != nil {
			t.Fatal(err)
		}
	}
	old := b.Epoch()
	b.Close()
	data, _ := os.ReadFile(path)
	for i := 0; i < 8192; i++ {
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = buffer.Open(path, buffer.Options{Node: "edge1", Salvage: true})
	if err != nil {
		t.Fatalf("open with salvage: %v", err)
	}
	defer b.Close()
	if st := b.Stats(); st.Records != int64(n) || b.Epoch() == old {
		t.Fatalf("after salvage: %+v, epoch %s (damaged one's %s)", st, b.Epoch(), old)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*.salvaged"); len(aside) != 1 {
		t.Fatalf("kept aside, marked salvaged: %v", aside)
	}
	// A second start salvages nothing again.
	b.Close()
	b, err = buffer.Open(path, buffer.Options{Node: "edge1", Salvage: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Records != int64(n) {
		t.Fatalf("after a second start: %+v", st)
	}
}

// A start that died while salvaging left the damaged file aside and the
// new buffer partly filled: the next start finishes the salvage, and a
// file that cannot be salvaged at all does not keep the buffer from
// starting (it is kept, and reported).
func TestOpenFinishesAnInterruptedSalvage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buf.db")
	b, err := buffer.Open(path, buffer.Options{Node: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if _, err := b.Append(context.Background(), buffer.Input{Stream: "pos", Payload: []byte("sale")}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	if err := os.Rename(path, path+".corrupt-20261202T000000Z"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".corrupt-20261202T000001Z", []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = buffer.Open(path, buffer.Options{Node: "edge1", Salvage: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Stats(); st.Records != 30 {
		t.Fatalf("after the interrupted salvage was finished: %+v", st)
	}
	if _, err := os.Stat(path + ".corrupt-20261202T000001Z"); err != nil {
		t.Fatalf("the file that could not be salvaged is gone: %v", err)
	}
}
