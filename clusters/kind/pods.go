package kind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WorkloadNamespace holds the pods a scenario's image workloads run in.
const WorkloadNamespace = "edgefault-workloads"

// pods runs a fleet's image workloads as pods on the members' Nodes.
type pods struct {
	mu     sync.Mutex
	loaded map[string]bool // site + "\x00" + image
	seq    int
}

var podNameBad = regexp.MustCompile(`[^a-z0-9-]+`)

// startPod runs c as a pod on member's Node: the image loaded into the
// site's nodes from the Docker engine (no registry), host networking (so
// the node's runtime is at 127.0.0.1 and the cloud is reached through the
// gateway, as a process there would), the fleet's directory mounted at
// the same path (evidence goes where the harness collects it).
func (f *Fleet) startPod(ctx context.Context, m *fleetMember, c clusters.Command) (clusters.Process, error) {
	if m.Role != clusters.RoleNode {
		return nil, fmt.Errorf("%s on %s: images run on nodes (pods); %s is the %s: %w", c.Name, m.Name, m.Name, m.Role, clusters.ErrUnsupported)
	}
	if !imageRefRE.MatchString(c.Image) {
		return nil, fmt.Errorf("%s on %s: image %q is not an image reference", c.Name, m.Name, c.Image)
	}
	s, err := f.site(m.Site)
	if err != nil {
		return nil, err
	}
	if err := f.loadImage(ctx, s, c.Image); err != nil {
		return nil, err
	}
	cfg, err := f.SiteConfig(m.Site)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: WorkloadNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("namespace %s: %w", WorkloadNamespace, err)
	}
	f.pods.mu.Lock()
	f.pods.seq++
	seq := f.pods.seq
	f.pods.mu.Unlock()
	name := strings.Trim(podNameBad.ReplaceAllString(strings.ToLower(c.Name+"-"+m.Name), "-"), "-")
	if len(name) > 50 {
		name = strings.Trim(name[:50], "-")
	}
	name = fmt.Sprintf("%s-%d", name, seq)
	env := []corev1.EnvVar{{Name: "NODE_NAME", Value: m.Name}}
	for _, kv := range c.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%s on %s: environment entry %q is not NAME=VALUE", c.Name, m.Name, kv)
		}
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: WorkloadNamespace, Labels: map[string]string{
			"app.kubernetes.io/managed-by": "edgefault", "edgefault.io/workload": podNameBad.ReplaceAllString(strings.ToLower(c.Name), "-"),
		}},
		Spec: corev1.PodSpec{
			NodeName:      m.Name,
			HostNetwork:   true,
			DNSPolicy:     corev1.DNSClusterFirstWithHostNet,
			RestartPolicy: corev1.RestartPolicyNever,
			// The supervisor restarts it, as it does a process.
			TerminationGracePeriodSeconds: ptr(int64(5)),
			Containers: []corev1.Container{{
				Name: "workload", Image: c.Image, ImagePullPolicy: corev1.PullNever,
				Command: c.Argv, Env: env,
				VolumeMounts: []corev1.VolumeMount{{Name: "fleet", MountPath: f.dir()}},
			}},
			Volumes: []corev1.Volume{{Name: "fleet", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: f.dir(), Type: &hostPathType}}}},
		},
	}
	if sb := c.Sandbox; sb != nil {
		confine(&pod.Spec, sb)
	}
	if _, err := cs.CoreV1().Pods(WorkloadNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("%s on %s: create pod: %w", c.Name, m.Name, err)
	}
	p := &podProcess{cs: cs, name: name, node: m.Container, log: filepath.Join(f.dir(), "logs", m.Name+"-"+c.Name+".log"), done: make(chan struct{})}
	go p.watch()
	return p, nil
}

var _ clusters.RuntimePods = (*Fleet)(nil)

// RuntimeImage makes the runtime's image (EdgeguardImage: the binary
// alone, FROM scratch, tagged with its digest) and loads it into the
// Docker engine; startPod loads it into each site's nodes. A scenario's
// runtime settings differ by member (its buffer, its events, its sink
// token), so the harness runs one pod per node with them, as the
// DaemonSet in deploy/ would with one setting for all.
func (f *Fleet) RuntimeImage(ctx context.Context, edgeguard string) (ref, entry string, err error) {
	tmp, err := os.MkdirTemp(f.dir(), "image-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	ref, archive, err := EdgeguardImage(tmp, edgeguard)
	if err != nil {
		return "", "", err
	}
	if _, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
		if err := LoadDockerImage(ctx, archive); err != nil {
			return "", "", fmt.Errorf("load the runtime's image %s into the Docker engine: %w", ref, err)
		}
	}
	return ref, "/edgeguard", nil
}

var imageRefRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:@-]{0,254}$`)

// loadImage puts image, from the Docker engine, into every node of the
// site's cluster, once per fleet.
func (f *Fleet) loadImage(ctx context.Context, s *fleetSite, image string) error {
	f.pods.mu.Lock()
	defer f.pods.mu.Unlock()
	key := s.Name + "\x00" + image
	if f.pods.loaded[key] {
		return nil
	}
	cs, err := NewClusters(f.p.ledger, f.FleetName, f.p.log)
	if err != nil {
		return err
	}
	if err := cs.LoadEngineImage(ctx, s.Cluster, image); err != nil {
		return err
	}
	if f.pods.loaded == nil {
		f.pods.loaded = map[string]bool{}
	}
	f.pods.loaded[key] = true
	f.p.log.Info("image loaded into the site's nodes", "image", image, "site", s.Name)
	return nil
}

// podProcess is a workload pod, as the harness supervises a process.
type podProcess struct {
	cs   kubernetes.Interface
	name string
	node string // the node's container
	log  string
	done chan struct{}
	once sync.Once
	err  error
}

var _ clusters.Process = (*podProcess)(nil)

func (p *podProcess) ID() string { return "pod " + WorkloadNamespace + "/" + p.name }

func (p *podProcess) LogPath() string { return p.log }

func (p *podProcess) Done() <-chan struct{} { return p.done }

// watch closes done when the pod has ended (or is gone), its log saved.
func (p *podProcess) watch() {
	failures := 0
	for {
		pod, err := p.cs.CoreV1().Pods(WorkloadNamespace).Get(context.Background(), p.name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			// The API is gone (the fleet was taken down) or down for
			// long: the pod is lost to us either way.
			if failures++; failures > 60 {
				p.finish(fmt.Errorf("pod %s: the API server has not answered for 30 s: %w", p.name, err))
				return
			}
		} else {
			failures = 0
		}
		switch {
		case apierrors.IsNotFound(err):
			p.finish(errors.New("the pod was deleted"))
			return
		case err == nil && pod.Status.Phase == corev1.PodSucceeded:
			p.saveLog()
			p.finish(nil)
			return
		case err == nil && pod.Status.Phase == corev1.PodFailed:
			p.saveLog()
			p.finish(fmt.Errorf("pod %s failed: %s", p.name, exitReason(pod)))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func exitReason(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			return fmt.Sprintf("exit code %d (%s)", t.ExitCode, t.Reason)
		}
	}
	return pod.Status.Reason
}

func (p *podProcess) finish(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// saveLog appends the container's output to the log file (best effort:
// the log is evidence for people, not for validators).
func (p *podProcess) saveLog() {
	b, err := p.cs.CoreV1().Pods(WorkloadNamespace).GetLogs(p.name, &corev1.PodLogOptions{Container: "workload"}).DoRaw(context.Background())
	if err != nil || len(b) == 0 {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p.log), 0o755); err != nil {
		return
	}
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer lf.Close()
	fmt.Fprintf(lf, "--- pod %s\n", p.name)
	_, _ = lf.Write(b)
}

// Signal stops the pod's container as a crash (SIGKILL) or a stop
// (SIGTERM, then SIGKILL after 5 s) does: the node's container runtime
// stops it (crictl), the pod fails and keeps its log, and only then is it
// Done, so its successor never meets it still holding a port or a lock (a
// forced deletion from the API returns before the container is dead).
// A pod whose container is not running is deleted instead. Other
// signals have no pod equivalent.
func (p *podProcess) Signal(sig syscall.Signal) error {
	var timeout string
	switch sig {
	case syscall.SIGKILL:
		timeout = "0"
	case syscall.SIGTERM:
		timeout = "5"
	default:
		return fmt.Errorf("pod %s: %v has no pod equivalent (SIGKILL, SIGTERM): %w", p.name, sig, clusters.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := p.cs.CoreV1().Pods(WorkloadNamespace).Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.name, err)
	}
	id := ""
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Running != nil {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		// Not running yet (or any more): no container to stop, so the
		// pod goes, at once; its watcher sees it gone, and the kill is
		// not left pending for a later exit to pass as planned.
		zero := int64(0)
		err := p.cs.CoreV1().Pods(WorkloadNamespace).Delete(ctx, p.name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if !containerIDRE.MatchString(id) {
		return fmt.Errorf("pod %s: container ID %q", p.name, id)
	}
	if _, err := docker(ctx, nil, "exec", p.node, "crictl", "stop", "--timeout", timeout, id); err != nil {
		return fmt.Errorf("pod %s: stop its container on %s: %w", p.name, p.node, err)
	}
	return nil
}

var containerIDRE = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// Stop deletes the pod with grace and waits for it to end.
func (p *podProcess) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.saveLog()
	secs := int64(grace.Seconds())
	err := p.cs.CoreV1().Pods(WorkloadNamespace).Delete(context.Background(), p.name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(grace + 10*time.Second):
	}
	return nil
}

// Wait waits for the pod to end and returns how it ended.
func (p *podProcess) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// confine makes a user's pod what clusters.Sandbox asks: its user, no
// capabilities, no privilege escalation, and of the fleet's directory only
// its own writable paths (at the same paths), not the whole of it.
func confine(spec *corev1.PodSpec, sb *clusters.Sandbox) {
	ctr := &spec.Containers[0]
	ctr.SecurityContext = &corev1.SecurityContext{
		RunAsUser: ptr(int64(sb.UID)), RunAsGroup: ptr(int64(sb.GID)), RunAsNonRoot: ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	ctr.WorkingDir = sb.Dir
	spec.AutomountServiceAccountToken = ptr(false)
	spec.Volumes, ctr.VolumeMounts = nil, nil
	for i, p := range sb.Writable {
		t := corev1.HostPathFile
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			t = corev1.HostPathDirectory
		}
		v := fmt.Sprintf("w%d", i)
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: &t}}})
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: v, MountPath: p})
	}
}
