package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// RunIfInvoked confines this process and executes its command if it was
// started by Wrap; otherwise it returns at once. It never returns when
// invoked: the command runs, or the process exits 126 saying why not.
func RunIfInvoked() {
	if filepath.Base(os.Args[0]) != argv0 {
		return
	}
	var s Spec
	raw, ok := os.LookupEnv(specEnv)
	if !ok || len(os.Args) < 2 {
		fail("started without a spec or a command")
	}
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fail("its spec: %v", err)
	}
	if err := s.Check(); err != nil {
		fail("%v", err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, specEnv+"=") {
			env = append(env, e)
		}
	}
	// Namespaces, credentials and the no-new-privileges bit are the
	// thread's: everything from here to exec happens on this one.
	runtime.LockOSThread()
	if err := enter(s); err != nil {
		fail("%v", err)
	}
	argv := os.Args[1:]
	bin := argv[0]
	if !strings.Contains(bin, "/") {
		// Looked up in the command's PATH, as the user it now is.
		os.Setenv("PATH", lookup(env, "PATH"))
		p, err := exec.LookPath(bin)
		if err != nil {
			fail("%s: not found in PATH %q (as uid %d)", bin, lookup(env, "PATH"), s.UID)
		}
		bin = p
	}
	err := syscall.Exec(bin, argv, env)
	hint := ""
	if errors.Is(err, syscall.EACCES) {
		hint = "; the command runs as uid " + strconv.Itoa(s.UID) + ": put it (and what it reads) where that user can read and execute it, such as /usr/local/bin or /opt, not under /root"
	}
	fail("exec %s: %v%s", bin, err, hint)
}

func lookup(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// enter confines the calling thread: mounts first (they need root), then
// the capability bounding set, then the user, then no new privileges.
func enter(s Spec) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return &os.SyscallError{Syscall: "unshare(CLONE_NEWNS)", Err: err}
	}
	// Nothing mounted here reaches the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return &os.SyscallError{Syscall: "mount --make-rprivate /", Err: err}
	}
	// The writable paths are opened before anything hides them (in this
	// namespace: a mount of another cannot be bound), and bound back
	// from these descriptors.
	fds := make([]int, len(s.Writable))
	for i, p := range s.Writable {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open writable path", Path: p, Err: err}
		}
		fds[i] = fd
	}
	var covers []string
	for _, h := range s.Hide {
		c := cover(h)
		if _, err := os.Stat(c); err != nil {
			continue // nothing there to hide
		}
		if err := unix.Mount("tmpfs", c, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
			return &os.PathError{Op: "hide", Path: c, Err: err}
		}
		covers = append(covers, c)
	}
	for i, p := range s.Writable {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		// Only what was made for it: a file or a directory of its own,
		// never a link that root would follow below.
		if t := st.Mode & unix.S_IFMT; (t != unix.S_IFDIR && t != unix.S_IFREG) || int(st.Uid) != s.UID {
			return fmt.Errorf("writable path %s: not a file or directory owned by uid %d", p, s.UID)
		}
		// Inside a cover, the path is made again to bind onto.
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
				return err
			}
		} else if f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW, 0o644); err != nil {
			return err
		} else {
			f.Close()
		}
		src := "/proc/self/fd/" + strconv.Itoa(fds[i])
		if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
			return &os.PathError{Op: "bind writable path", Path: p, Err: err}
		}
		unix.Close(fds[i])
	}
	for _, c := range covers {
		if err := unix.Mount("", c, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return &os.PathError{Op: "make read-only", Path: c, Err: err}
		}
	}
	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if err := unix.Chdir(dir); err != nil {
		return &os.PathError{Op: "chdir", Path: dir, Err: err}
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return &os.SyscallError{Syscall: "prctl(PR_CAPBSET_DROP " + strconv.Itoa(c) + ")", Err: err}
		}
	}
	// Raw, per-thread calls: Go's own Setuid changes every thread, and
	// only this one goes on to exec. setresuid from root to a user
	// clears the permitted, effective and ambient capabilities.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return &os.SyscallError{Syscall: "setgroups", Err: e}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(s.GID), uintptr(s.GID), uintptr(s.GID)); e != 0 {
		return &os.SyscallError{Syscall: "setresgid", Err: e}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(s.UID), uintptr(s.UID), uintptr(s.UID)); e != 0 {
		return &os.SyscallError{Syscall: "setresuid", Err: e}
	}
	// Set-user-ID programs (su, mount) and file capabilities give it
	// nothing back.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	return nil
}

// cover is what hides dir: its topmost parent that not everyone may walk
// through, or dir itself.
func cover(dir string) string {
	parts := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	p := "/"
	for _, part := range parts {
		p = filepath.Join(p, part)
		st, err := os.Stat(p)
		if err != nil {
			return dir
		}
		if st.Mode().Perm()&0o001 == 0 {
			return p
		}
	}
	return dir
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
