package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/ledger"
	"golang.org/x/sys/unix"
)

// ballast is the file FillDisk fills a member's disk with.
const ballast = ".edgefault-ballast"

// LimitDisk mounts a tmpfs of size bytes on member's data directory, so
// that a scenario can fill it without touching the machine's own disk. It
// is recorded before it is mounted; Down and cleanup unmount it.
func (f *Fleet) LimitDisk(ctx context.Context, member string, size int64) error {
	if size < 1<<20 || size > 1<<30 {
		return fmt.Errorf("disk of %d bytes for %s: give 1 MiB to 1 GiB", size, member)
	}
	pt, err := f.Paths(member)
	if err != nil {
		return err
	}
	// Absolute, so that cleanup from anywhere finds it.
	dir, err := filepath.Abs(pt.Data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%s's data directory: %w", member, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s's data directory: %w", member, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s's data directory %s is in use (%d entries): a disk of its own is given before its workloads start", member, dir, len(ents))
	}
	if err := f.p.ledger.Record(f.FleetName, ledger.Entry{Kind: ledger.KindMount, Name: dir}); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0750", size)); err != nil {
		return fmt.Errorf("mount a %d MiB disk on %s's data directory %s: %w", size>>20, member, dir, err)
	}
	return nil
}

// FillDisk fills member's disk (given by LimitDisk) to the last byte with a
// ballast file, or removes the ballast.
func (f *Fleet) FillDisk(ctx context.Context, member string, full bool) error {
	pt, err := f.Paths(member)
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pt.Data, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s has no disk of its own to fill (its data directory %s is not one; the scenario's diskFull steps give it one before the runtime starts)", member, pt.Data)
	}
	path := filepath.Join(pt.Data, ballast)
	if !full {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("free %s's disk: %w", member, err)
		}
		return nil
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("fill %s's disk: %w", member, err)
	}
	defer fh.Close()
	// What is free, page by page: a process writing meanwhile may take
	// some, so allocate what is left until nothing is.
	for range 8 {
		if err := unix.Statfs(pt.Data, &st); err != nil {
			return err
		}
		free := int64(st.Bavail) * st.Bsize
		if free == 0 {
			return nil
		}
		cur, _ := fh.Seek(0, 2)
		if err := unix.Fallocate(int(fh.Fd()), 0, cur, free); err != nil && !errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("fill %s's disk: %w", member, err)
		}
	}
	return fmt.Errorf("fill %s's disk: %d bytes still free after eight tries (something keeps freeing space)", member, int64(st.Bavail)*st.Bsize)
}

// unmountDisk is the remover of a member's disk: only a mount inside the
// provider's state directory, so that a ledger entry never unmounts
// anything else.
func (p *Provider) unmountDisk(e ledger.Entry) error {
	root, err := filepath.EvalSymlinks(p.stateDir)
	if err != nil {
		return err
	}
	// The mount point as the kernel resolves it, and strictly inside.
	dir, err := filepath.EvalSymlinks(e.Name)
	if errors.Is(err, os.ErrNotExist) {
		return nil // gone with its fleet's directory
	}
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(root, dir); err != nil || rel == "." || !filepath.IsLocal(rel) {
		return fmt.Errorf("refusing to unmount %s: it is not inside the fleets' state directory %s", e.Name, root)
	}
	err = unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // unmounted, never mounted (killed in between), or gone
	}
	return err
}

var _ clusters.Disks = (*Fleet)(nil)
