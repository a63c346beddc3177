package kind

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
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
	name := fmt.Sprintf("%s-%d", member.PodName(c.Name, m.Name), seq)
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
			"app.kubernetes.io/managed-by": "edgefault", "edgefault.io/workload": member.WorkloadLabel(c.Name),
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
	p := &member.PodProcess{CS: cs, Namespace: WorkloadNamespace, Name: name, Container: "workload",
		Log: filepath.Join(f.dir(), "logs", m.Name+"-"+c.Name+".log"), Halt: crictlStop(m.Container)}
	p.Watch()
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

// crictlStop stops a workload pod's container as a crash (SIGKILL) or a
// stop (SIGTERM, then SIGKILL after 5 s) does: the node's container
// runtime stops it (crictl), the pod fails and keeps its log.
func crictlStop(node string) func(ctx context.Context, pod *corev1.Pod, id string, sig syscall.Signal) error {
	return func(ctx context.Context, pod *corev1.Pod, id string, sig syscall.Signal) error {
		timeout := "5"
		if sig == syscall.SIGKILL {
			timeout = "0"
		}
		if !containerIDRE.MatchString(id) {
			return fmt.Errorf("container ID %q", id)
		}
		if _, err := docker(ctx, nil, "exec", node, "crictl", "stop", "--timeout", timeout, id); err != nil {
			return fmt.Errorf("stop its container on %s: %w", node, err)
		}
		return nil
	}
}

var containerIDRE = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

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
