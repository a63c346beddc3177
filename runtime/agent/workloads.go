package agent

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The run's workloads (the runtime, the scenario's workloads, the cloud's
// services) are pods on the node's host network that keep their evidence
// and data under the run's directory on the node (Config.Files). The
// harness reaches neither the node's disk nor its processes, so the agent
// does two things for it there: it hands over the evidence (and removes
// the directory at the end), and it crashes a workload pod as a scenario's
// kill step does, with SIGKILL to its container's processes (a pod's
// deletion would stop it with SIGTERM first, which is no crash).

// LabelManagedBy marks the pods the harness started for a run: the only
// ones the agent kills.
const LabelManagedBy = "app.kubernetes.io/managed-by"

// MaxEvidenceFile bounds one evidence file the agent hands over.
const MaxEvidenceFile = 1 << 30

var (
	evidenceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.jsonl$`)
	containerIDRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// evidence answers GET /v1/evidence: the run's evidence files (*.jsonl
// directly in Files/evidence, regular files only) as a tar stream. The
// directory is opened inside the run's directory and nothing is followed
// out of it (os.Root), so a workload that can write there cannot make the
// agent hand over another file of the node.
func (a *Agent) evidence(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Files == "" {
		writeErr(w, http.StatusNotFound, "this agent keeps no run directory (--files)")
		return
	}
	ev, err := evidenceRoot(a.cfg.Files)
	if errors.Is(err, os.ErrNotExist) {
		// Nothing written yet: an empty archive.
		w.Header().Set("Content-Type", "application/x-tar")
		_ = tar.NewWriter(w).Close()
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "the run's evidence: %v", err)
		return
	}
	defer ev.Close()
	d, err := ev.Open(".")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "the run's evidence: %v", err)
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "the run's evidence: %v", err)
		return
	}
	// Beyond the server's write timeout: a node's evidence may be large
	// and the hop through the API server slow.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(evidenceTimeout))
	w.Header().Set("Content-Type", "application/x-tar")
	tw := tar.NewWriter(w)
	for _, e := range ents {
		if !e.Type().IsRegular() || !evidenceNameRE.MatchString(e.Name()) {
			continue
		}
		if err := tarFile(tw, ev, e.Name()); errors.Is(err, errSkipped) {
			a.cfg.Log.Warn("evidence not handed over", "file", e.Name(), "err", err)
			continue
		} else if err != nil {
			// The stream has begun: it ends short, without the tar's
			// trailer, which the harness reads as an error.
			a.cfg.Log.Error("handing over evidence", "file", e.Name(), "err", err)
			return
		}
	}
	if err := tw.Close(); err != nil {
		a.cfg.Log.Error("handing over evidence", "err", err)
	}
}

// evidenceRoot opens the evidence directory inside the run's directory,
// following nothing out of it (a link named evidence to elsewhere is
// refused).
func evidenceRoot(files string) (*os.Root, error) {
	root, err := os.OpenRoot(files)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.OpenRoot("evidence")
}

// evidenceTimeout bounds the handing over of a node's evidence.
const evidenceTimeout = 10 * time.Minute

// errSkipped: a file that is not handed over (it went, or is no longer a
// regular file of the directory); the others still are.
var errSkipped = errors.New("skipped")

// tarFile writes one regular file of root as large as it was when opened
// (a workload may still be appending to it), at most MaxEvidenceFile.
func tarFile(tw *tar.Writer, root *os.Root, name string) error {
	// os.Root follows a link that stays inside it: the entry must be a
	// regular file itself, and the one opened the same.
	lst, err := root.Lstat(name)
	if err != nil || !lst.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%v): %w", name, err, errSkipped)
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", name, err, errSkipped)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || !os.SameFile(lst, st) {
		return fmt.Errorf("%s: replaced while being read: %w", name, errSkipped)
	}
	size := min(st.Size(), MaxEvidenceFile)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, size)
	return err
}

// removeFiles answers DELETE /v1/evidence: the run's directory goes,
// evidence and data alike (the harness has collected what it needs).
func (a *Agent) removeFiles(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Files == "" {
		writeJSON(w, http.StatusOK, map[string]string{})
		return
	}
	if err := os.RemoveAll(a.cfg.Files); err != nil {
		writeErr(w, http.StatusInternalServerError, "remove the run's directory %s: %v", a.cfg.Files, err)
		return
	}
	a.cfg.Log.Info("removed the run's directory", "dir", a.cfg.Files)
	writeJSON(w, http.StatusOK, map[string]string{})
}

// Killed is what POST /v1/kill/NAME answers.
type Killed struct {
	Pod       string `json:"pod"`
	Signal    string `json:"signal"`
	Processes int    `json:"processes"`
}

// kill answers POST /v1/kill/{name}[?signal=TERM]: the harness's pod NAME
// in the agent's namespace, on this node, has every process of its
// running containers sent SIGKILL (a crash, as a container runtime's stop
// with no grace is) or SIGTERM (a stop the workload may handle: the pod
// ends and keeps its log). Any other pod is refused.
func (a *Agent) kill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := ValidPod(a.cfg.Namespace + "/" + name); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	sig, signame := syscall.SIGKILL, "KILL"
	switch q := r.URL.Query().Get("signal"); q {
	case "", "KILL":
	case "TERM":
		sig, signame = syscall.SIGTERM, q
	default:
		writeErr(w, http.StatusBadRequest, "signal %q: KILL or TERM", q)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	pod, err := a.cfg.Client.CoreV1().Pods(a.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		writeErr(w, http.StatusGone, "pod %s/%s: not found", a.cfg.Namespace, name)
		return
	case err != nil:
		writeErr(w, http.StatusBadGateway, "pod %s/%s: %v", a.cfg.Namespace, name, err)
		return
	case pod.Spec.NodeName != a.cfg.Node:
		writeErr(w, http.StatusForbidden, "pod %s/%s runs on node %s, not on %s", a.cfg.Namespace, name, pod.Spec.NodeName, a.cfg.Node)
		return
	case pod.Labels[LabelManagedBy] != "edgefault":
		writeErr(w, http.StatusForbidden, "pod %s/%s is not a workload the harness started (label %s=edgefault)", a.cfg.Namespace, name, LabelManagedBy)
		return
	}
	var ids []string
	for _, s := range pod.Status.ContainerStatuses {
		_, id, _ := strings.Cut(s.ContainerID, "://")
		if s.State.Running != nil && containerIDRE.MatchString(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		writeErr(w, http.StatusGone, "pod %s/%s has no running container", a.cfg.Namespace, name)
		return
	}
	n, err := signalContainers(procRoot, ids, sig)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "pod %s/%s: %v", a.cfg.Namespace, name, err)
		return
	}
	if n == 0 {
		// Gone meanwhile (410), or not found while the API says it runs:
		// the agent does not see the node's processes (500), and the
		// harness must not count a kill that did not happen.
		if pod, err := a.cfg.Client.CoreV1().Pods(a.cfg.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil && running(pod, ids) {
			writeErr(w, http.StatusInternalServerError, "pod %s/%s: its containers run, but no process of theirs is in %s: is the agent on the host's PID namespace (hostPID)?", a.cfg.Namespace, name, procRoot)
			return
		}
		writeErr(w, http.StatusGone, "pod %s/%s: its containers have exited", a.cfg.Namespace, name)
		return
	}
	a.cfg.Log.Info("signalled a workload", "pod", name, "signal", signame, "processes", n)
	writeJSON(w, http.StatusOK, Killed{Pod: name, Signal: signame, Processes: n})
}

// procRoot is where the agent sees the node's processes: its own /proc,
// on the host's PID namespace (pidfd_open takes PIDs of the agent's own
// namespace, so no other /proc would do).
const procRoot = "/proc"

// running says whether the pod's status still has one of the containers
// ids running.
func running(pod *corev1.Pod, ids []string) bool {
	for _, s := range pod.Status.ContainerStatuses {
		_, id, _ := strings.Cut(s.ContainerID, "://")
		if s.State.Running != nil && slices.Contains(ids, id) {
			return true
		}
	}
	return false
}

// signalContainers sends sig to every process under proc whose cgroup is
// one of the containers'. Each is opened as a pidfd and its cgroup read
// again through it before the signal, so a PID reused meanwhile by
// another process is never signalled.
func signalContainers(proc string, ids []string, sig syscall.Signal) (int, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		cgroup := filepath.Join(proc, e.Name(), "cgroup")
		if b, err := os.ReadFile(cgroup); err != nil || !inContainer(string(b), ids) {
			continue // not one, or gone meanwhile
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			continue // gone
		}
		if err != nil {
			return n, fmt.Errorf("pidfd of pid %d (kernel 5.3 or later, and a seccomp profile that allows pidfd_open): %w", pid, err)
		}
		// The pidfd holds this process: if the PID was reused between the
		// read above and the open, the new process's cgroup is not the
		// container's.
		b, err := os.ReadFile(cgroup)
		if err == nil && inContainer(string(b), ids) {
			err = unix.PidfdSendSignal(fd, sig, nil, 0)
			if err == nil {
				n++
			} else if !errors.Is(err, syscall.ESRCH) {
				unix.Close(fd)
				return n, fmt.Errorf("signal pid %d: %w", pid, err)
			}
		}
		unix.Close(fd)
	}
	return n, nil
}

// inContainer says whether a /proc/PID/cgroup text puts the process in
// one of the containers: the last element of a cgroup path is the
// container's ID, bare (cgroupfs) or as containerd, CRI-O or Docker name
// its scope under systemd. CRI-O's conmon, which watches a container from
// outside it, is not in it.
func inContainer(cgroup string, ids []string) bool {
	for _, line := range strings.Split(cgroup, "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		last := strings.TrimSuffix(filepath.Base(parts[2]), ".scope")
		for _, id := range ids {
			for _, prefix := range []string{"", "cri-containerd-", "crio-", "docker-"} {
				if last == prefix+id {
					return true
				}
			}
		}
	}
	return false
}
