package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// The marks failover puts on its Node.
const (
	UplinkKey = "edgefault.io/uplink" // label uplink=down, taint uplink=down:NoSchedule
	// cordonedBy marks a cordon failover made, so recovery never undoes
	// an operator's own cordon.
	cordonedBy = "edgefault.io/cordoned-by"
	// GatewayLabel names the gateway a node's uplink goes through (the
	// embedded fleet sets it; label your nodes so on other clusters). A
	// node without it is taken to be its own uplink (a gateway).
	GatewayLabel = "edgefault.io/gateway"
)

// uplinkOf is the uplink a node depends on.
func uplinkOf(n *corev1.Node) string {
	if g := n.Labels[GatewayLabel]; g != "" {
		return g
	}
	return n.Name
}

// Actions are what failover does to its own Node in the site's cluster
// while the uplink is lost; recovery undoes them in reverse.
type Actions struct {
	Label, Taint, Cordon, Drain bool
}

// Kube applies Actions through client-go. Every step is idempotent: the
// reconcile loop may run it again after an error (the API unreachable)
// without doing anything twice, and an Event is written only for a change
// actually made.
type Kube struct {
	Client kubernetes.Interface
	Node   string
	Actions
	// EvictRetries bounds the attempts per pod when a
	// PodDisruptionBudget refuses (default 5, 1 s apart): a drain never
	// hangs.
	EvictRetries int
	Logger       *slog.Logger
}

// apply brings the Node to the wanted state: marked (down) or not.
func (k *Kube) apply(ctx context.Context, down bool, reason string) error {
	n, err := k.Client.CoreV1().Nodes().Get(ctx, k.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", k.Node, err)
	}
	labels := map[string]any{}
	annotations := map[string]any{}
	spec := map[string]any{}
	var changes []string
	if k.Label {
		if down && n.Labels[UplinkKey] != "down" {
			labels[UplinkKey], changes = "down", append(changes, "labelled "+UplinkKey+"=down")
		} else if !down && n.Labels[UplinkKey] != "" {
			labels[UplinkKey], changes = nil, append(changes, "label removed")
		}
	}
	if k.Taint {
		var taints []corev1.Taint
		has := false
		for _, t := range n.Spec.Taints {
			if t.Key == UplinkKey {
				has = true
				continue
			}
			taints = append(taints, t)
		}
		if down && !has {
			taints = append(taints, corev1.Taint{Key: UplinkKey, Value: "down", Effect: corev1.TaintEffectNoSchedule})
			spec["taints"], changes = taints, append(changes, "tainted "+UplinkKey+"=down:NoSchedule")
		} else if !down && has {
			spec["taints"], changes = taints, append(changes, "taint removed")
		}
	}
	if k.Cordon {
		if down && !n.Spec.Unschedulable {
			spec["unschedulable"], annotations[cordonedBy] = true, "failover"
			changes = append(changes, "cordoned")
		} else if !down && n.Annotations[cordonedBy] == "failover" {
			spec["unschedulable"], annotations[cordonedBy] = false, nil
			changes = append(changes, "uncordoned")
		}
	}
	if len(changes) > 0 {
		patch := map[string]any{"metadata": map[string]any{"labels": labels, "annotations": annotations}}
		if len(spec) > 0 {
			patch["spec"] = spec
		}
		// A merge patch with the resourceVersion read: if someone changed
		// the Node meanwhile, the conflict makes the loop read it again.
		patch["metadata"].(map[string]any)["resourceVersion"] = n.ResourceVersion
		b, _ := json.Marshal(patch)
		if _, err := k.Client.CoreV1().Nodes().Patch(ctx, k.Node, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("patch node %s: %w", k.Node, err)
		}
		what := "UplinkDown"
		if !down {
			what = "UplinkRestored"
		}
		k.event(ctx, n, what, fmt.Sprintf("%s: %v", reason, changes))
	}
	if down && k.Drain {
		return k.drain(ctx, n)
	}
	return nil
}

// drain evicts the node's pods, as kubectl drain --ignore-daemonsets does,
// but only where a node behind another uplink (another gateway) is up,
// schedulable and not marked down: with nowhere better to run, the local
// workload stays up.
func (k *Kube) drain(ctx context.Context, self *corev1.Node) error {
	nodes, err := k.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	elsewhere := ""
	for _, n := range nodes.Items {
		if n.Name != k.Node && uplinkOf(&n) != uplinkOf(self) && !n.Spec.Unschedulable && n.Labels[UplinkKey] != "down" && ready(&n) {
			elsewhere = n.Name
			break
		}
	}
	if elsewhere == "" {
		return nil
	}
	pods, err := k.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.Node})
	if err != nil {
		return fmt.Errorf("list pods on %s: %w", k.Node, err)
	}
	retries := k.EvictRetries
	if retries <= 0 {
		retries = 5
	}
	var errs []error
	var skipped []string
	evicted := 0
	for _, p := range pods.Items {
		if daemonPod(&p) || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		var err error
		for i := 0; i < retries; i++ {
			err = k.Client.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
			if err == nil || apierrors.IsNotFound(err) {
				err = nil
				evicted++
				break
			}
			if !apierrors.IsTooManyRequests(err) {
				break
			}
			select { // a PodDisruptionBudget says not yet
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
		if apierrors.IsForbidden(err) {
			// Not ours to move: under deploy/failover-drain.yaml only
			// namespaces labelled edgefault.io/drain=allowed are.
			skipped = append(skipped, p.Namespace+"/"+p.Name)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	if evicted > 0 {
		k.event(ctx, self, "Drained", fmt.Sprintf("evicted %d pods: the uplink is down and %s still has one", evicted, elsewhere))
	}
	if len(skipped) > 0 {
		k.logger().Info("drain left pods it may not evict", "pods", skipped, "why", "forbidden: label their namespaces edgefault.io/drain=allowed if failover should move them")
	}
	return errors.Join(errs...)
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func daemonPod(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// event writes a Kubernetes Event on the Node (best effort).
func (k *Kube) event(ctx context.Context, n *corev1.Node, reason, msg string) {
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: k.Node + ".", Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID, APIVersion: "v1"},
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "edgeguard-failover", Host: k.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if reason == "UplinkRestored" {
		ev.Type = corev1.EventTypeNormal
	}
	if _, err := k.Client.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil && k.Logger != nil {
		k.Logger.Warn("failover could not write an Event", "reason", reason, "err", err)
	}
}

func (k *Kube) logger() *slog.Logger {
	if k.Logger != nil {
		return k.Logger
	}
	return slog.Default()
}
