package existing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/internal/member"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// The run's workloads on a cluster the harness did not make are pods:
// the runtime on each node, the scenario's workloads beside it, and the
// cloud's services on the cloud's node, all on their node's host network
// (as a process on the node would be: the node's runtime at 127.0.0.1,
// the cloud reached over the node's uplink, which the agent shapes), in
// the run's namespace, so that removing it removes them. Their evidence
// and data are on the node, in the run's directory (RunDir), which the
// agent hands over and removes. The harness reaches their ports through
// the API server (port-forward), never over the nodes' network.

var (
	_ clusters.RuntimePods = (*Fleet)(nil)
	_ clusters.CloudPorts  = (*Fleet)(nil)
)

// CloudPorts are the cloud's services' ports on the cloud's node: not
// the usual 8080-8082, which a cluster's node often serves already
// (flannel's health check is on 8081).
func (f *Fleet) CloudPorts() (speed, content, sink int) { return 18080, 18081, 18082 }

// RuntimeImage is the image the fleet was brought up with (--agent-image):
// it holds edgeguard, the agent and the runtime alike.
func (f *Fleet) RuntimeImage(ctx context.Context, edgeguard string) (ref, entry string, err error) {
	return f.Image, "/edgeguard", nil
}

// Paths are in the run's directory on member's node, as its pods see it
// (the same path, mounted from the node).
func (f *Fleet) Paths(name string) (clusters.Paths, error) {
	m, err := f.find(name)
	if err != nil {
		return clusters.Paths{}, err
	}
	dir := RunDir(f.RunID)
	return clusters.Paths{Evidence: path.Join(dir, "evidence"), Data: path.Join(dir, "data", m.Name)}, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// LabelWorkload names the workload a pod runs ("runtime", "speedserver").
const LabelWorkload = "edgefault.io/workload"

// StartCommand runs c as a pod on member's node. A command without an
// image must be edgeguard's (the runtime, its workloads, the cloud's
// services): it runs from the fleet's image. Any other needs an image.
func (f *Fleet) StartCommand(ctx context.Context, name string, c clusters.Command) (clusters.Process, error) {
	m, err := f.find(name)
	if err != nil {
		return nil, err
	}
	image, argv := c.Image, c.Argv
	if image == "" {
		if len(argv) == 0 || !strings.HasPrefix(filepath.Base(argv[0]), "edgeguard") {
			return nil, fmt.Errorf("%s on %s: on an existing cluster a workload runs as a pod: give it an image (a command runs only if it is edgeguard's, from the runtime's image): %w", c.Name, name, clusters.ErrUnsupported)
		}
		image, argv = f.Image, append([]string{"/edgeguard"}, argv[1:]...)
	}
	if c.Sandbox != nil {
		return nil, fmt.Errorf("%s on %s: a confined command (a user's app) on an existing cluster: %w (give it an image)", c.Name, name, clusters.ErrUnsupported)
	}
	// The environment (the sink's credentials and tokens among it) goes
	// in a Secret of the pod's own, not in its spec, which whoever may
	// read pods in the namespace reads (the agents among them).
	secret := map[string]string{}
	for _, kv := range c.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("%s on %s: environment entry %q is not NAME=VALUE", c.Name, name, kv)
		}
		secret[k] = v
	}
	cs, err := f.Cluster.client()
	if err != nil {
		return nil, err
	}
	workload := member.WorkloadLabel(c.Name)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	// A name of its own in the run's namespace, also beside the pods of
	// an earlier harness process on the same fleet.
	podName := member.PodName(c.Name, m.Name) + "-" + hex.EncodeToString(b)
	dir := RunDir(f.RunID)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: Namespace, Labels: map[string]string{
			"app.kubernetes.io/managed-by": "edgefault", "app.kubernetes.io/part-of": "edgefault",
			LabelWorkload: workload, clusters.LabelMember: m.Name,
		}},
		Spec: corev1.PodSpec{
			NodeName:      m.Node,
			HostNetwork:   true,
			DNSPolicy:     corev1.DNSClusterFirstWithHostNet,
			RestartPolicy: corev1.RestartPolicyNever, // the harness's supervisor restarts it
			// It must run where the link is cut, as the agent does.
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: ptr(int64(workloadGrace / time.Second)),
			AutomountServiceAccountToken:  ptr(false),
			Containers: []corev1.Container{{
				Name: "workload", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: argv, Env: []corev1.EnvVar{{Name: "NODE_NAME", Value: m.Name}},
				VolumeMounts: []corev1.VolumeMount{{Name: "run", MountPath: dir}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
			Volumes: []corev1.Volume{{Name: "run", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}}},
		},
	}
	if len(secret) > 0 {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: Namespace, Labels: pod.Labels}, StringData: secret}
		if _, err := cs.CoreV1().Secrets(Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("%s on %s: its environment's Secret: %w", c.Name, name, err)
		}
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: podName}}}}
	}
	created, err := cs.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if len(secret) > 0 {
			_ = cs.CoreV1().Secrets(Namespace).Delete(context.WithoutCancel(ctx), podName, metav1.DeleteOptions{})
		}
		return nil, fmt.Errorf("%s on %s: create pod: %w", c.Name, name, err)
	}
	if len(secret) > 0 {
		// The Secret goes with its pod (a restart makes a new pair). If
		// this fails it stays until the run's namespace goes: no reason
		// to fail a pod that runs.
		own := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`, created.Name, created.UID)
		_, _ = cs.CoreV1().Secrets(Namespace).Patch(ctx, podName, types.MergePatchType, []byte(own), metav1.PatchOptions{})
	}
	p := &member.PodProcess{CS: cs, Namespace: Namespace, Name: podName, Container: "workload",
		Log: filepath.Join(f.dir(), "logs", m.Name+"-"+c.Name+".log"), Halt: f.halt(cs, m.Node)}
	p.Watch()
	return p, nil
}

// halt signals a workload pod's container through its node's agent:
// SIGKILL (a crash), or SIGTERM (a stop it may handle) and SIGKILL if it
// still runs after the pod's grace, as a container runtime's stop does;
// either way the pod ends and keeps its log. A pod whose processes ended
// meanwhile is what was asked for.
func (f *Fleet) halt(cs kubernetes.Interface, node string) func(ctx context.Context, pod *corev1.Pod, id string, sig syscall.Signal) error {
	return func(ctx context.Context, pod *corev1.Pod, id string, sig syscall.Signal) error {
		a := NewAgents(cs, f.Token)
		_, err := a.Signal(ctx, node, pod.Name, sig)
		if errors.Is(err, ErrGone) {
			return nil
		}
		if err != nil || sig != syscall.SIGTERM {
			return err
		}
		deadline := time.Now().Add(workloadGrace)
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			p, err := cs.CoreV1().Pods(Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				return nil
			}
		}
		if _, err := a.Signal(ctx, node, pod.Name, syscall.SIGKILL); err != nil && !errors.Is(err, ErrGone) {
			return fmt.Errorf("still running %v after SIGTERM: %w", workloadGrace, err)
		}
		return nil
	}
}

// workloadGrace is how long a workload has to end after SIGTERM (the
// pods' terminationGracePeriodSeconds).
const workloadGrace = 5 * time.Second

// Exec is not supported: the harness runs nothing on a cluster's nodes
// but its pods.
func (f *Fleet) Exec(ctx context.Context, member string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return unsupported("running a command on " + member)
}

// Collect writes the run's evidence, from every node's agent, into
// dir/evidence, the workloads' logs into dir/logs, and the agents' logs
// (what they applied and cleared, and why) beside them. A node whose
// agent cannot answer costs its own evidence only: the rest is collected
// and the error says which.
func (f *Fleet) Collect(ctx context.Context, dir string) error {
	cs, err := f.Cluster.client()
	if err != nil {
		return err
	}
	ev := filepath.Join(dir, "evidence")
	if err := os.MkdirAll(ev, 0o755); err != nil {
		return err
	}
	f.collectMu.Lock()
	defer f.collectMu.Unlock()
	if f.collected == nil {
		f.collected = map[string]string{}
	}
	a := NewAgents(cs, f.Token)
	var errs []error
	seen := map[string]bool{}
	for _, m := range f.All {
		if seen[m.Node] {
			continue
		}
		seen[m.Node] = true
		err := a.Evidence(ctx, m.Node, func(name string, r io.Reader) error {
			if name != filepath.Base(name) || !strings.HasSuffix(name, ".jsonl") || strings.HasPrefix(name, ".") {
				return fmt.Errorf("the evidence on node %s: a file named %q", m.Node, name)
			}
			path := filepath.Join(ev, name)
			// A workload's file never replaces the harness's own evidence
			// (its timeline, its supervisor) or another node's: only what
			// an earlier Collect of this node wrote there.
			if from, ok := f.collected[path]; (ok && from != m.Node) || (!ok && exists(path)) {
				return fmt.Errorf("the evidence on node %s: %s is already there (another node's, or the harness's own): not replaced", m.Node, name)
			}
			f.collected[path] = m.Node
			return writeFile(path, r)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("the evidence on node %s: %w", m.Node, err))
		}
	}
	if err := member.Collect(f.dir(), dir); err != nil {
		errs = append(errs, err)
	}
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("the agents' pods: %w", err))...)
	}
	for _, p := range pods.Items {
		b, err := cs.CoreV1().Pods(Namespace).GetLogs(p.Name, &corev1.PodLogOptions{LimitBytes: ptr(int64(8 << 20))}).Do(ctx).Raw()
		if err != nil {
			b = []byte(fmt.Sprintf("could not read the log of %s: %v\n", p.Name, err))
		}
		if err := os.WriteFile(filepath.Join(dir, "logs", "agent-"+p.Spec.NodeName+".log"), b, 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// writeFile writes r to path, replacing it.
func writeFile(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	return errors.Join(err, out.Close())
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitAgents waits until an agent serves on each of nodes, up to within.
func waitAgents(ctx context.Context, cs kubernetes.Interface, nodes []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		missing := map[string]bool{}
		for _, n := range nodes {
			missing[n] = true
		}
		if err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && ready(&p) {
					delete(missing, p.Spec.NodeName)
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			var left []string
			for n := range missing {
				left = append(left, n)
			}
			return fmt.Errorf("no agent was ready on node(s) %s within %v (DaemonSet %s/%s: is the runtime's image, --agent-image, on those nodes, and is port %d free there? 'kubectl -n %s describe pods' and the agent's log say why): %v",
				strings.Join(left, ", "), within, Namespace, AgentName, AgentPort, Namespace, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
