package netns_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefault/edgefault/scenarios"
	"golang.org/x/sys/unix"
)

// A member's own disk keeps what was fsynced through a power cut and loses
// the unsynced tail; it fills to the last byte and frees again; and Down
// leaves no mount behind.
func TestDiskKeepsOnlyWhatWasSynced(t *testing.T) {
	p, _ := provider(t)
	name := fmt.Sprintf("t%d-d", os.Getpid()%10000)
	ctx := context.Background()
	f, err := p.UpFleet(ctx, name, &scenarios.FleetSpec{Sites: []scenarios.Site{
		{Name: "s", Gateway: &scenarios.Gateway{Name: "gw"}, Nodes: []scenarios.Node{{Name: "n"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	down := func() {
		if err := p.Down(ctx, name); err != nil {
			t.Errorf("down: %v", err)
		}
	}
	defer func() {
		if f != nil {
			down()
		}
	}()
	if err := f.CutPower(ctx, "n"); err == nil || !strings.Contains(err.Error(), "not a disk of its own") {
		t.Fatalf("cutting the power of a disk never given: %v", err)
	}
	if err := f.LimitDisk(ctx, "n", 32<<20); err != nil {
		t.Fatal(err)
	}
	pt, _ := f.Paths("n")
	dir, _ := filepath.Abs(pt.Data)

	synced := bytes.Repeat([]byte("s"), 1<<20)
	fh, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(synced); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	// The tail the power takes: appended, never fsynced, and a file
	// created and written without fsync.
	if _, err := fh.Write(bytes.Repeat([]byte("u"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unsynced"), []byte("gone"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.CutPower(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "after"), []byte("x"), 0o600); err == nil {
		t.Error("a write after the power cut succeeded")
	}
	fh.Close()
	if err := f.Boot(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if n := loopsBacking(t, name); n != 1 {
		t.Errorf("%d loop devices back the disk after the boot, want 1", n)
	}
	got, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, synced) {
		t.Errorf("after the power cut the log holds %d bytes (%d synced, %d unsynced after them), want exactly the synced 1 MiB", len(got), bytes.Count(got, []byte("s")), bytes.Count(got, []byte("u")))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "unsynced")); err == nil && len(b) > 0 {
		t.Errorf("a file never fsynced survived the power cut with %q", b)
	}

	// Full to the last byte, for root too, and free again.
	if err := f.FillDisk(ctx, "n", true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more"), bytes.Repeat([]byte("m"), 64<<10), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("writing 64 KiB to a full disk: %v, want ENOSPC", err)
	}
	if err := f.FillDisk(ctx, "n", false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more"), bytes.Repeat([]byte("m"), 64<<10), 0o600); err != nil {
		t.Errorf("writing 64 KiB to the freed disk: %v", err)
	}

	down()
	f = nil
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("the disk is still mounted on %s after Down", dir)
	}
	if n := loopsBacking(t, name); n != 0 {
		t.Errorf("%d loop devices still back the disk after Down", n)
	}
}

// loopsBacking counts the loop devices whose backing file is in fleet's
// directory.
func loopsBacking(t *testing.T, fleet string) int {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "/"+fleet+"/disks/") {
			n++
		}
	}
	return n
}
