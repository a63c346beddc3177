package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/ledger"
	"golang.org/x/sys/unix"
)

// ballast is the file FillDisk fills a member's disk with.
const ballast = ".edgefault-ballast"

// ext4Shutdown is EXT4_IOC_SHUTDOWN (_IOR('X', 125, __u32)), and
// noLogFlush its EXT4_GOING_FLAGS_NOLOGFLUSH: the filesystem stops at once
// without committing its journal or writing back dirty pages, as a disk
// does when the power goes (xfstests' godown uses the same call).
const (
	ext4Shutdown = 0x8004587d
	noLogFlush   = 0x2
)

// LimitDisk gives member's data directory a disk of its own: an ext4
// filesystem of size bytes in an image file in the fleet's directory,
// mounted through a loop device, so that a scenario can fill it or cut
// its power without touching the machine's own disk. The mount is
// recorded before it is made; Down and cleanup unmount it (and the loop
// device, set to clear itself, goes with it).
func (f *Fleet) LimitDisk(ctx context.Context, member string, size int64) error {
	if size < 16<<20 || size > 1<<30 {
		return fmt.Errorf("disk of %d bytes for %s: give 16 MiB to 1 GiB", size, member)
	}
	dir, err := f.dataDir(member)
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
	img := f.diskImage(member)
	if err := makeExt4(ctx, img, size); err != nil {
		return fmt.Errorf("%s's disk: %w", member, err)
	}
	if err := f.p.ledger.Record(f.FleetName, ledger.Entry{Kind: ledger.KindMount, Name: dir}); err != nil {
		return err
	}
	if err := mountImage(img, dir); err != nil {
		return fmt.Errorf("%s's disk: %w", member, err)
	}
	return nil
}

// dataDir is member's data directory, absolute so that cleanup from
// anywhere finds its mount.
func (f *Fleet) dataDir(member string) (string, error) {
	pt, err := f.Paths(member)
	if err != nil {
		return "", err
	}
	return filepath.Abs(pt.Data)
}

// diskImage is the file holding member's disk (member names are checked
// to be path-safe when the fleet is planned).
func (f *Fleet) diskImage(member string) string {
	return filepath.Join(f.Dir(), "disks", member+".ext4")
}

// ownDisk is member's data directory, refused unless the filesystem
// mounted there is the member's own disk (a loop device backed by its
// image): a stop or a fill must never reach the machine's own disk.
func (f *Fleet) ownDisk(member, what string) (dir string, err error) {
	dir, err = f.dataDir(member)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		for _, l := range loopsOf(f.diskImage(member)) {
			if l.dev == st.Dev {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("cannot %s %s's disk: its data directory %s is not a disk of its own (a scenario's diskFull and powerLoss steps give it one before the runtime starts)", what, member, dir)
}

// loop is a loop device: its name (loop3) and device number.
type loop struct {
	name string
	dev  uint64
}

// loopsOf lists the loop devices backed by img.
func loopsOf(img string) []loop {
	real, err := filepath.EvalSymlinks(img)
	if err != nil {
		return nil
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []loop
	for _, bf := range files {
		b, err := os.ReadFile(bf)
		if err != nil || strings.TrimSpace(string(b)) != real {
			continue
		}
		sys := filepath.Dir(filepath.Dir(bf))
		d, err := os.ReadFile(filepath.Join(sys, "dev"))
		if err != nil {
			continue
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(string(d)), "%d:%d", &maj, &min); err != nil {
			continue
		}
		out = append(out, loop{name: filepath.Base(sys), dev: unix.Mkdev(maj, min)})
	}
	return out
}

// FillDisk fills member's disk (given by LimitDisk) to the last byte with a
// ballast file, or removes the ballast.
func (f *Fleet) FillDisk(ctx context.Context, member string, full bool) error {
	dir, err := f.ownDisk(member, "fill")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, ballast)
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
	// What is free, then halves of it: an extent's own metadata takes
	// blocks, so the last ones go in smaller pieces; a process writing
	// meanwhile may take some, which is as full.
	var st unix.Statfs_t
	for range 64 {
		if err := unix.Statfs(dir, &st); err != nil {
			return err
		}
		free := int64(st.Bavail) * st.Bsize
		if free == 0 {
			return fh.Sync()
		}
		for size := free; ; size /= 2 {
			if size < st.Bsize {
				// Not even a block fits: full, and so it stays through a
				// power loss.
				return fh.Sync()
			}
			cur, _ := fh.Seek(0, 2)
			err := unix.Fallocate(int(fh.Fd()), 0, cur, size)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.ENOSPC) {
				return fmt.Errorf("fill %s's disk: %w", member, err)
			}
		}
	}
	return fmt.Errorf("fill %s's disk: %d bytes still free after many tries (something keeps freeing space)", member, int64(st.Bavail)*st.Bsize)
}

// CutPower stops member's disk as a power loss does: what the kernel had
// not yet written to it (dirty pages, the journal's open transaction) is
// never written, and every later read or write fails. What an fsync
// returned for is on the disk. The caller stops the member's processes
// around it; Boot mounts the disk again.
func (f *Fleet) CutPower(ctx context.Context, member string) error {
	dir, err := f.ownDisk(member, "cut the power of")
	if err != nil {
		return err
	}
	return shutdownExt4(dir)
}

// Boot mounts member's disk again after CutPower, once nothing has it
// open: ext4 replays its journal, and the disk holds what was written
// before the power went.
func (f *Fleet) Boot(ctx context.Context, member string) error {
	dir, err := f.dataDir(member)
	if err != nil {
		return err
	}
	// Until every file of the old mount is closed (the member's processes
	// were killed, and the kernel closes their files as they go).
	deadline := time.Now().Add(10 * time.Second)
	var uerr error
	if err := pollUntil(ctx, deadline, func() bool {
		uerr = unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
		return !errors.Is(uerr, unix.EBUSY)
	}); err != nil {
		return err
	}
	if uerr != nil && !errors.Is(uerr, unix.EINVAL) { // EINVAL: it was not mounted
		return fmt.Errorf("boot %s: unmount its disk %s: %w (is a process still using it?)", member, dir, uerr)
	}
	// The old loop device clears itself once nothing holds the old
	// filesystem (a sandboxed app's mount namespace may, until it is
	// gone): mounting the image again before would mount it twice.
	var old []loop
	if err := pollUntil(ctx, deadline, func() bool {
		old = loopsOf(f.diskImage(member))
		return len(old) == 0
	}); err != nil {
		return err
	}
	if len(old) > 0 {
		return fmt.Errorf("boot %s: its disk's old mount (%s) is still held 10 s after its power was cut (a process in another mount namespace?)", member, old[0].name)
	}
	if err := mountImage(f.diskImage(member), dir); err != nil {
		return fmt.Errorf("boot %s: %w", member, err)
	}
	return nil
}

// pollUntil calls done every 50 ms until it is true or the deadline
// passes; only ctx ending is an error.
func pollUntil(ctx context.Context, deadline time.Time, done func() bool) error {
	for !done() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// makeExt4 makes img an ext4 filesystem of size bytes with no blocks
// reserved for root (the runtime runs as root, and a disk full must be
// full for it too).
func makeExt4(ctx context.Context, img string, size int64) error {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("mkfs.ext4 is not installed: install e2fsprogs (apt-get install e2fsprogs)")
	}
	if err := os.MkdirAll(filepath.Dir(img), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(img, size); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", "-m", "0", "-E", "nodiscard", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountImage attaches img to a free loop device, set to clear itself once
// unmounted, and mounts it on dir.
func mountImage(img, dir string) error {
	loop, err := attachLoop(img)
	if err != nil {
		return err
	}
	// The mount holds the device from here; closing ours lets it clear
	// itself when the mount goes.
	defer loop.Close()
	if err := unix.Mount(loop.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", img, loop.Name(), dir, err)
	}
	return nil
}

// attachLoop gives img a loop device of its own.
func attachLoop(img string) (*os.File, error) {
	backing, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w (is the loop module loaded? modprobe loop)", err)
	}
	defer ctl.Close()
	// Another attach may take the free device between asking and
	// configuring it: ask again.
	for range 16 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("a free loop device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("loop device %d: %w", n, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], img)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s to loop device %d: %w", img, n, err)
		}
	}
	return nil, fmt.Errorf("attach %s: every free loop device was taken before it could be used", img)
}

// shutdownExt4 stops the ext4 filesystem mounted on dir without flushing
// anything.
func shutdownExt4(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetPointerInt(fd, ext4Shutdown, noLogFlush); err != nil {
		return fmt.Errorf("cut the power of the disk on %s: %w", dir, err)
	}
	return nil
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
