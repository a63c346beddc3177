package agent_test

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/shaper"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Against a real kube-apiserver and real processes: the agent hands over
// the run's evidence (regular *.jsonl files only, not through a symlink),
// crashes a workload pod of the run on its node with SIGKILL to the
// processes of its container's cgroup (and refuses any other pod), and
// removes the run's directory when asked.
func TestAgentServesTheRunsWorkloads(t *testing.T) {
	star := traffic.StarT(t, 1)
	ctx := context.Background()
	r := liveRun(t, map[string]string{agent.NodesKey: "lab-1"})
	r.agent(r.shaper("test"), shaper.Link{Netns: star.Hosts[0], Name: "eth0"})

	ev := filepath.Join(r.files, "evidence")
	if err := os.MkdirAll(ev, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(r.dir, "secret.jsonl")
	for name, body := range map[string]string{"truck-ecu-runtime.jsonl": `{"event":"started"}` + "\n", "notes.txt": "not evidence", "..jsonl": "a bad name"} {
		if err := os.WriteFile(filepath.Join(ev, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(secret, []byte("the harness's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(ev, "link.jsonl")); err != nil {
		t.Fatal(err)
	}
	if code, body := r.call("GET", "/v1/evidence", "", nil); code != http.StatusUnauthorized {
		t.Errorf("evidence without the token: %d %s", code, body)
	}
	evidence := func() map[string]string {
		t.Helper()
		code, body := r.call("GET", "/v1/evidence", token, nil)
		if code != http.StatusOK {
			t.Fatalf("evidence: %d %s", code, body)
		}
		files := map[string]string{}
		tr := tar.NewReader(strings.NewReader(body))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return files
			}
			if err != nil {
				t.Fatalf("evidence: the tar stream: %v", err)
			}
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
	if got := evidence(); len(got) != 1 || got["truck-ecu-runtime.jsonl"] != `{"event":"started"}`+"\n" {
		t.Errorf("evidence: got %q, want truck-ecu-runtime.jsonl alone", got)
	}
	// A workload that makes the evidence directory a link out of the
	// run's directory hands over nothing of what it points at.
	elsewhere := filepath.Join(r.dir, "elsewhere")
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "other-run.jsonl"), []byte("another run's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ev, ev+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, ev); err != nil {
		t.Fatal(err)
	}
	if code, body := r.call("GET", "/v1/evidence", token, nil); code == http.StatusOK && strings.Contains(body, "another run's") {
		t.Errorf("evidence through a linked directory: %d, handed over what the link points at", code)
	}
	if err := os.Remove(ev); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ev+".real", ev); err != nil {
		t.Fatal(err)
	}

	// Pods of the run's namespace, as the kubelet would report them (no
	// controller-manager here makes the namespace's default account).
	if _, err := r.cs.CoreV1().ServiceAccounts(r.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id, victim := containerInCgroup(t)
	pod := func(name, node string, labelled bool, containerID string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns}, Spec: corev1.PodSpec{
			NodeName: node, Containers: []corev1.Container{{Name: "workload", Image: "edgefault/edgeguard:test"}}}}
		if labelled {
			p.Labels = map[string]string{agent.LabelManagedBy: "edgefault"}
		}
		p, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "workload", Image: "edgefault/edgeguard:test", ContainerID: "containerd://" + containerID,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		if _, err := r.cs.CoreV1().Pods(r.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("elsewhere", "lab-2", true, id)
	pod("not-ours", "lab-1", false, id)
	pod("runtime-truck-ecu-1", "lab-1", true, id)
	for _, tc := range []struct {
		name string
		code int
		want string
	}{
		{"elsewhere", http.StatusForbidden, "runs on node lab-2"},
		{"not-ours", http.StatusForbidden, "not a workload the harness started"},
		{"gone", http.StatusGone, "not found"},
		{"Bad_Name", http.StatusBadRequest, ""},
		{"runtime-truck-ecu-1?signal=HUP", http.StatusBadRequest, "KILL or TERM"},
	} {
		if code, body := r.call("POST", "/v1/kill/"+tc.name, token, nil); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("kill %s: %d %s, want %d %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	select {
	case <-victim:
		t.Fatal("a refused kill killed the process")
	default:
	}
	if code, body := r.call("POST", "/v1/kill/runtime-truck-ecu-1", "", nil); code != http.StatusUnauthorized {
		t.Errorf("kill without the token: %d %s", code, body)
	}
	code, body := r.call("POST", "/v1/kill/runtime-truck-ecu-1", token, nil)
	var k agent.Killed
	if code != http.StatusOK || json.Unmarshal([]byte(body), &k) != nil || k.Processes != 1 || k.Signal != "KILL" {
		t.Fatalf("kill: %d %s, want 1 process", code, body)
	}
	select {
	case err := <-victim:
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the workload's process ended with %v, not SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the workload's process still runs 5 s after the kill")
	}

	if code, body := r.call("DELETE", "/v1/evidence", token, nil); code != http.StatusOK {
		t.Fatalf("remove the run's directory: %d %s", code, body)
	}
	if _, err := os.Stat(r.files); !os.IsNotExist(err) {
		t.Errorf("the run's directory remains: %v", err)
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("the file a symlink pointed to went too: %v", err)
	}
}

// containerInCgroup starts a process in a cgroup named as containerd
// names a container's (cri-containerd-ID.scope) and returns the ID and
// the process's end.
func containerInCgroup(t *testing.T) (string, <-chan error) {
	t.Helper()
	root := cgroupRoot(t)
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	parent := filepath.Join(root, "edgefault-test-"+id[:8])
	dir := filepath.Join(parent, "cri-containerd-"+id+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("a cgroup for the test's container: %v", err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-time.After(100 * time.Millisecond)
		_ = os.Remove(dir)
		_ = os.Remove(parent)
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatalf("move the test's process into its cgroup: %v", err)
	}
	return id, done
}

// cgroupRoot is a cgroup hierarchy this machine mounts: cgroup v2 (alone
// or beside v1), else v1's pids controller.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v1 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		switch {
		case fs[2] == "cgroup2":
			return fs[1]
		case fs[2] == "cgroup" && strings.Contains(","+fs[3]+",", ",pids,"):
			v1 = fs[1]
		}
	}
	if v1 == "" {
		t.Fatal("no cgroup hierarchy is mounted (cgroup2, or v1 with pids): the agent finds a container's processes by their cgroup")
	}
	return v1
}
