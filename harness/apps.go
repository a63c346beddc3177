package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// appFile is an evidence file the harness gave a command workload
// (APP_EVENTS), with who it gave it to: the file's lines are labelled by
// that, not by what they say.
type appFile struct {
	base, member, workload string
	uid                    int
}

// appEnv is what every command workload is told, on a node or in the
// cloud: where it is (NODE_NAME), where the cloud and the cloud
// workloads are (CLOUD_ADDR, <NAME>_ADDR), where to write its own
// evidence (APP_EVENTS) and a data directory of its own that outlives its
// restarts (DATA_DIR); and the sandbox it runs in: a user of its own
// (RunOptions.AppUID and up, one per instance, so no two instances reach
// each other's files or processes) who owns those two paths and may
// write nothing else of the harness's.
func (r *run) appEnv(member string, w scenarios.Workload, paths clusters.Paths) ([]string, *clusters.Sandbox, error) {
	cloud, err := r.f.Member(clusters.CloudName)
	if err != nil {
		return nil, nil, err
	}
	id, err := r.claimUID()
	if err != nil {
		return nil, nil, fmt.Errorf("workload %s on %s: %w", w.Name, member, err)
	}
	data := path.Join(paths.Data, "app-"+w.Name)
	// '.' is in no member's or workload's name: no two pairs share a file.
	base := member + "." + w.Name + appSuffix
	events := path.Join(paths.Evidence, base)
	if err := giveTo(id, data, events); err != nil {
		return nil, nil, fmt.Errorf("workload %s on %s: %w", w.Name, member, err)
	}
	r.apps = append(r.apps, appFile{base: base, member: member, workload: w.Name, uid: id})
	env := []string{
		"NODE_NAME=" + member,
		"APP_EVENTS=" + events,
		"DATA_DIR=" + data,
		"CLOUD_ADDR=" + cloud.Address,
	}
	for _, c := range r.sc.Spec.Workloads {
		if c.OnCloud() && c.Port != 0 {
			env = append(env, scenarios.EnvName(c.Name)+"="+net.JoinHostPort(cloud.Address, strconv.Itoa(c.Port)))
		}
	}
	if w.Kubeconfig {
		kc, err := r.giveKubeconfig(member, id, data)
		if err != nil {
			return nil, nil, fmt.Errorf("workload %s on %s: its kubeconfig: %w", w.Name, member, err)
		}
		env = append(env, "KUBECONFIG="+kc)
	}
	// The reports directory (the harness's evidence as it is written,
	// everyone's logs) is hidden too.
	var hide []string
	if abs, err := filepath.Abs(r.o.Reports); err == nil {
		hide = append(hide, abs)
	}
	return env, &clusters.Sandbox{UID: id, GID: id, Writable: []string{data, events}, Dir: data, Hide: hide}, nil
}

// uidLockDir holds a lock file per app user in use on this machine,
// whatever the state directory: runs side by side (two suites, two
// presenters) never share a user, so neither's sweep kills the other's app.
const uidLockDir = "/run/edgefault-app-uids"

// maxAppUIDs bounds the search for a free app user.
const maxAppUIDs = 10000

// claimUID claims the first user from RunOptions.AppUID up that no other
// run holds (its lock file, flocked while the run lasts; a crashed run's
// lock goes with it) and no process runs as (a process a crashed run
// left is skipped, and named).
func (r *run) claimUID() (int, error) {
	// Root's alone: a lock another user could hold or remove would let
	// two runs share a user.
	if err := os.Mkdir(uidLockDir, 0o700); err != nil && !os.IsExist(err) {
		return 0, fmt.Errorf("app users' locks: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(uidLockDir, &st); err != nil {
		return 0, fmt.Errorf("app users' locks: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return 0, fmt.Errorf("app users' locks: %s is not a directory only root may write: remove it", uidLockDir)
	}
	start := r.o.AppUID
	if n := len(r.apps); n > 0 {
		start = r.apps[n-1].uid + 1
	}
	for id := start; id < r.o.AppUID+maxAppUIDs; id++ {
		f, err := os.OpenFile(filepath.Join(uidLockDir, strconv.Itoa(id)), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return 0, fmt.Errorf("app user %d's lock: %w", id, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // another run's
			continue
		}
		if _, err := user.LookupId(strconv.Itoa(id)); err == nil {
			continue // a real account's
		}
		if pids := uidProcs(id); len(pids) > 0 {
			r.log.Warn("skipping an app user that already runs processes (left by a run that crashed?)", "uid", id, "pids", pids, "stop them with", fmt.Sprintf("pkill -U %d", id))
			f.Close()
			continue
		}
		r.uidLocks = append(r.uidLocks, f)
		return id, nil
	}
	return 0, fmt.Errorf("no free app user in %d..%d: other runs hold them, or processes run as them; pick another --app-uid", r.o.AppUID, r.o.AppUID+maxAppUIDs-1)
}

// releaseUIDs lets other runs have this run's app users (after the sweep).
func (r *run) releaseUIDs() {
	for _, f := range r.uidLocks {
		f.Close()
	}
	r.uidLocks = nil
}

// uidProcs lists the processes running as uid.
func uidProcs(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The status's Uid line, not /proc/PID's owner: a process that
		// made itself non-dumpable shows root there.
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if ids, ok := strings.CutPrefix(line, "Uid:"); ok {
				if slices.Contains(strings.Fields(ids), strconv.Itoa(uid)) {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

// sweepApps kills whatever still runs as an app's user once the run has
// stopped its workloads: a process that left its group (setsid) is not
// in the group the supervisor stops.
func (r *run) sweepApps() {
	// What its group's stop reached is still exiting: a moment first.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		left := false
		for _, a := range r.apps {
			left = left || len(uidProcs(a.uid)) > 0
		}
		if !left {
			return
		}
	}
	for _, a := range r.apps {
		for _, pid := range uidProcs(a.uid) {
			r.log.Warn("an app's process outlived its workload; killing it", "uid", a.uid, "pid", pid, "workload", a.workload, "member", a.member)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Gone, not dying: the next run's check must not meet them.
	deadline := time.Now().Add(5 * time.Second)
	for _, a := range r.apps {
		for len(uidProcs(a.uid)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// killAppsOn kills what is left of member's apps after a power loss took
// their process groups: a daemon that left its group would otherwise live
// on without power and hold the node's disk.
func (r *run) killAppsOn(member string) {
	deadline := time.Now().Add(5 * time.Second)
	for _, a := range r.apps {
		if a.member != member {
			continue
		}
		for _, pid := range uidProcs(a.uid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for len(uidProcs(a.uid)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// giveKubeconfig copies member's own identity for its site's API server
// into the app's data directory, readable by the app's user alone.
func (r *run) giveKubeconfig(member string, uid int, data string) (string, error) {
	if !r.o.Provider.Info().ControlPlanes {
		return "", fmt.Errorf("provider %s starts no control planes here (netns: run edgefault setup first)", r.o.Provider.Name())
	}
	m, err := r.f.Member(member)
	if err != nil {
		return "", err
	}
	b, err := r.f.Kubeconfig(m.Site, member)
	if err != nil {
		return "", err
	}
	// Its certificates are files the app cannot see: embed them.
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return "", err
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return "", err
	}
	if b, err = clientcmd.Write(*cfg); err != nil {
		return "", err
	}
	p := path.Join(data, "kubeconfig")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return p, os.Lchown(p, uid, uid)
}

// giveTo makes an app's data directory and evidence file, owned by uid
// (the harness reads the file as it is, whoever wrote it).
func giveTo(uid int, data, events string) error {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("its data directory: %w", err)
	}
	f, err := os.OpenFile(events, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("its evidence file: %w", err)
	}
	f.Close()
	for _, p := range []string{data, events} {
		if err := os.Lchown(p, uid, uid); err != nil {
			return fmt.Errorf("give %s to uid %d: %w", p, uid, err)
		}
	}
	return nil
}

// deployCloudWorkloads starts the scenario's cloud workloads, supervised
// as the edge's are, and waits for each to be ready: the edge side starts
// against a cloud that is there.
func (r *run) deployCloudWorkloads(ctx context.Context) error {
	for _, w := range r.sc.Spec.Workloads {
		if !w.OnCloud() {
			continue
		}
		paths, err := r.f.Paths(clusters.CloudName)
		if err != nil {
			return err
		}
		env, sb, err := r.appEnv(clusters.CloudName, w, paths)
		if err != nil {
			return err
		}
		if err := r.sup.run(ctx, clusters.CloudName, "workload/"+w.Name, clusters.Command{Argv: w.Command, Env: env, Sandbox: sb}); err != nil {
			return fmt.Errorf("cloud workload %s: %w", w.Name, err)
		}
		if err := r.waitWorkload(ctx, clusters.CloudName, w); err != nil {
			return err
		}
		r.log.Info("cloud workload started", "workload", w.Name, "port", w.Port)
	}
	return nil
}

// waitWorkload waits for w's readiness check on member, if it has one,
// up to its bound, and says what it last saw and where the log is.
func (r *run) waitWorkload(ctx context.Context, member string, w scenarios.Workload) error {
	if w.Ready == nil {
		return nil
	}
	host, err := r.f.Host(member)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(w.Port))
	within := w.Ready.ReadyWithin()
	if w.Ready.HTTP != "" {
		err = waitHTTP(ctx, host, "http://"+addr+w.Ready.HTTP, within)
	} else {
		err = waitUntil(ctx, within, func(ctx context.Context) error {
			c, err := host.DialContext(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("a TCP connection to %s: %w", addr, err)
			}
			return c.Close()
		})
	}
	if err != nil {
		return fmt.Errorf("workload %s on %s not ready within %v (%v); its log: %s", w.Name, member, within, err,
			filepath.Join(r.o.Reports, r.sc.Metadata.Name, "logs", member+"-workload-"+w.Name+".log"))
	}
	return nil
}
