package member

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

var podNameBad = regexp.MustCompile(`[^a-z0-9-]+`)

// WorkloadLabel is a workload's name as a label value (and a DNS label)
// allows: lower case, other characters as '-'.
func WorkloadLabel(workload string) string {
	return strings.Trim(podNameBad.ReplaceAllString(strings.ToLower(workload), "-"), "-")
}

// PodName is the stem of a workload pod's name: the workload's and the
// member's names as a DNS label allows, short enough for the caller's
// suffix (what makes it unique: a sequence, a random part).
func PodName(workload, member string) string {
	name := WorkloadLabel(workload + "-" + member)
	if len(name) > 50 {
		name = strings.Trim(name[:50], "-")
	}
	return name
}

// PodProcess is a workload pod (one container, RestartPolicy Never), as
// the harness supervises a process: Done once the pod has ended, its log
// saved on this machine.
type PodProcess struct {
	CS        kubernetes.Interface
	Namespace string
	Name      string
	// Container is the pod's one container's name.
	Container string
	// Log is where its output is appended when it ends.
	Log string
	// Halt stops the running container id (SIGKILL: a crash, at once;
	// SIGTERM: a stop with grace) so that the pod fails and keeps its
	// log, and Done follows only once it is dead: a forced deletion from
	// the API returns before the container is, and its successor would
	// meet it still holding a port or a lock.
	Halt func(ctx context.Context, pod *corev1.Pod, id string, sig syscall.Signal) error

	done chan struct{}
	once sync.Once
	err  error
}

var _ clusters.Process = (*PodProcess)(nil)

// Watch starts watching the pod; call it once, after its creation.
func (p *PodProcess) Watch() {
	p.done = make(chan struct{})
	go p.watch()
}

func (p *PodProcess) ID() string { return "pod " + p.Namespace + "/" + p.Name }

func (p *PodProcess) LogPath() string { return p.Log }

func (p *PodProcess) Done() <-chan struct{} { return p.done }

// watch closes done when the pod has ended (or is gone), its log saved.
func (p *PodProcess) watch() {
	failures := 0
	for {
		pod, err := p.CS.CoreV1().Pods(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			// The API is gone (the fleet was taken down) or down for
			// long: the pod is lost to us either way.
			if failures++; failures > 60 {
				p.finish(fmt.Errorf("pod %s: the API server has not answered for 30 s: %w", p.Name, err))
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
			p.finish(fmt.Errorf("pod %s failed: %s", p.Name, exitReason(pod)))
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

func (p *PodProcess) finish(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// saveLog appends the container's output to the log file (best effort:
// the log is evidence for people, not for validators).
func (p *PodProcess) saveLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := p.CS.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: p.Container, LimitBytes: ptr(int64(64 << 20))}).DoRaw(ctx)
	if err != nil || len(b) == 0 {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return
	}
	lf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer lf.Close()
	fmt.Fprintf(lf, "--- pod %s\n", p.Name)
	_, _ = lf.Write(b)
}

func ptr[T any](v T) *T { return &v }

// Signal stops the pod's container as a crash (SIGKILL) or a stop
// (SIGTERM) does, through Halt. A pod whose container is not running is
// deleted instead, at once: its watcher sees it gone, and the kill is not
// left pending for a later exit to pass as planned. Other signals have
// no pod equivalent.
func (p *PodProcess) Signal(sig syscall.Signal) error {
	if sig != syscall.SIGKILL && sig != syscall.SIGTERM {
		return fmt.Errorf("pod %s: %v has no pod equivalent (SIGKILL, SIGTERM): %w", p.Name, sig, clusters.ErrUnsupported)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := p.CS.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	id := ""
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Running != nil {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		err := p.CS.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := p.Halt(ctx, pod, id, sig); err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	return nil
}

// Stop deletes the pod with grace and waits for it to end.
func (p *PodProcess) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.saveLog()
	secs := int64(grace.Seconds())
	err := p.CS.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
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
func (p *PodProcess) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
