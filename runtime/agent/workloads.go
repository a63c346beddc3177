package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

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

// MaxEvidence bounds the evidence one answer carries.
const MaxEvidence = 256 << 20

var (
	evidenceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.jsonl$`)
	containerIDRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// evidence answers GET /v1/evidence: the run's evidence files (*.jsonl
// directly in Files/evidence, regular files only), as a JSON object of
// name → content (base64).
func (a *Agent) evidence(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Files == "" {
		writeErr(w, http.StatusNotFound, "this agent keeps no run directory (--files)")
		return
	}
	dir := filepath.Join(a.cfg.Files, "evidence")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		writeJSON(w, http.StatusOK, map[string][]byte{})
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "the run's evidence: %v", err)
		return
	}
	out := map[string][]byte{}
	total := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !evidenceNameRE.MatchString(e.Name()) {
			continue
		}
		b, err := readRegular(filepath.Join(dir, e.Name()), MaxEvidence-total)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, "the run's evidence: %v", err)
			return
		}
		if total += len(b); total >= MaxEvidence {
			writeErr(w, http.StatusRequestEntityTooLarge, "the run's evidence on %s is over %d MiB (at %s)", a.cfg.Node, MaxEvidence>>20, e.Name())
			return
		}
		out[e.Name()] = b
	}
	writeJSON(w, http.StatusOK, out)
}

// readRegular reads at most limit bytes of a regular file, never through
// a symlink (a workload could have put one there).
func readRegular(path string, limit int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, int64(limit)+1))
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
	Processes int    `json:"processes"`
}

// kill answers POST /v1/kill/{name}: the harness's pod NAME in the
// agent's namespace, on this node, has every process of its running
// containers killed with SIGKILL, as a crash does (and as a container
// runtime's stop with no grace does). Any other pod is refused.
func (a *Agent) kill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := ValidPod(a.cfg.Namespace + "/" + name); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	pod, err := a.cfg.Client.CoreV1().Pods(a.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		writeErr(w, http.StatusNotFound, "pod %s/%s: not found", a.cfg.Namespace, name)
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
		writeErr(w, http.StatusConflict, "pod %s/%s has no running container", a.cfg.Namespace, name)
		return
	}
	n, err := killContainers(a.cfg.Proc, ids)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "pod %s/%s: %v", a.cfg.Namespace, name, err)
		return
	}
	if n == 0 {
		writeErr(w, http.StatusNotFound, "pod %s/%s: no process of its containers in %s (is the agent on the host's PID namespace?)", a.cfg.Namespace, name, a.cfg.Proc)
		return
	}
	a.cfg.Log.Info("killed a workload", "pod", name, "processes", n)
	writeJSON(w, http.StatusOK, Killed{Pod: name, Processes: n})
}

// killContainers sends SIGKILL to every process under proc whose cgroup
// is one of the containers': a container's cgroup path ends in its ID,
// whichever cgroup driver made it (cri-containerd-ID.scope, /ID).
func killContainers(proc string, ids []string) (int, error) {
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
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cgroup"))
		if err != nil {
			continue // gone meanwhile
		}
		if !inContainer(string(b), ids) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return n, fmt.Errorf("kill pid %d: %w", pid, err)
		}
		n++
	}
	return n, nil
}

// inContainer says whether a /proc/PID/cgroup text puts the process in
// one of the containers.
func inContainer(cgroup string, ids []string) bool {
	for _, line := range strings.Split(cgroup, "\n") {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		last := filepath.Base(parts[2])
		for _, id := range ids {
			if last == id || strings.HasSuffix(strings.TrimSuffix(last, ".scope"), "-"+id) {
				return true
			}
		}
	}
	return false
}
