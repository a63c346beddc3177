package existing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/runtime/agent"
	appsv1 "k8s.io/api/apps/v1"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Namespace is where the harness puts everything it deploys: deleting it
// removes all of it.
const Namespace = "edgefault"

// AgentName names the agent's DaemonSet and ServiceAccount.
const AgentName = "edgefault-agent"

// AgentPort is where the agent listens on each node (reached through the
// API server's pod proxy).
const AgentPort = 9443

// leaseSeconds is the run's Lease: an agent clears what it applied once
// the harness has not renewed it for this long.
const leaseSeconds = 15

// LabelRun marks the namespace a run deployed with the run's ID: removal
// deletes only a namespace that carries its own run's, never one of
// another run or the user's that happens to share the name.
const LabelRun = "edgefault.io/run"

// Run is what the harness deploys on a cluster for one run.
type Run struct {
	// ID names the run (NewRunID): the namespace's LabelRun.
	ID string
	// Nodes are the cluster's nodes the run may impair (never the cloud's).
	Nodes []string
	// Image is the runtime's image (edgeguard), already on the nodes:
	// the agent is `edgeguard agent` in it.
	Image string
	// Token is the run's token (NewToken).
	Token string
}

// NewRunID is a fresh run ID, prefixed with the fleet's name.
func NewRunID(fleet string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fleet + "-" + hex.EncodeToString(b)
}

// NewToken is a fresh token for a run.
func NewToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DataRoot is where, on each node, a run keeps its workloads' evidence
// and data: RunDir(run ID), removed at the end by the agent.
const DataRoot = "/var/lib/edgefault"

// RunDir is the run's directory on its nodes.
func RunDir(id string) string { return DataRoot + "/" + id }

var labels = map[string]string{"app.kubernetes.io/name": AgentName, "app.kubernetes.io/part-of": "edgefault"}

// agentSelector selects the agents' pods.
const agentSelector = "app.kubernetes.io/name=" + AgentName

// Objects are what Deploy creates, in order: the namespace, the agent's
// account and what it may read (the run's Lease and ConfigMap, by name,
// nothing else), the run's Secret, ConfigMap and Lease, and the agent's
// DaemonSet on the nodes that play nodes or gateways.
func Objects(r Run) (ns *corev1.Namespace, sa *corev1.ServiceAccount, role *rbacv1.Role, rb *rbacv1.RoleBinding,
	sec *corev1.Secret, cm *corev1.ConfigMap, lease *coordv1.Lease, ds *appsv1.DaemonSet) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels}
	}
	nsLabels := maps.Clone(labels)
	nsLabels[LabelRun] = r.ID
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: nsLabels}}
	no := false
	sa = &corev1.ServiceAccount{ObjectMeta: meta(AgentName), AutomountServiceAccountToken: &no}
	role = &rbacv1.Role{ObjectMeta: meta(AgentName), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{agent.RunObject}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{agent.RunObject}, Verbs: []string{"get"}},
		// A workload pod's containers, before it kills them (only pods
		// of this namespace, on its own node, that the harness started).
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
	}}
	rb = &rbacv1.RoleBinding{ObjectMeta: meta(AgentName),
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: AgentName},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: AgentName, Namespace: Namespace}}}
	sec = &corev1.Secret{ObjectMeta: meta(agent.RunObject), Type: corev1.SecretTypeOpaque, StringData: map[string]string{"token": r.Token}}
	cm = &corev1.ConfigMap{ObjectMeta: meta(agent.RunObject), Data: map[string]string{agent.NodesKey: strings.Join(r.Nodes, ",")}}
	dur := int32(leaseSeconds)
	holder := "edgefault"
	lease = &coordv1.Lease{ObjectMeta: meta(agent.RunObject), Spec: coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &metav1.MicroTime{Time: time.Now()}}}

	root := int64(0)
	yes := true
	ds = &appsv1.DaemonSet{ObjectMeta: meta(AgentName), Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				ServiceAccountName: AgentName,
				// The agent shapes the node's own uplink: it lives in the
				// node's network namespace. It sees the node's processes
				// (hostPID) to crash a workload of the run (SIGKILL, the
				// KILL capability), and never enters their namespaces.
				HostNetwork: true,
				HostPID:     true,
				DNSPolicy:   corev1.DNSClusterFirstWithHostNet,
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
						// The cloud's too: its services are workloads of
						// the run, whose evidence the agent hands over. The
						// ConfigMap never names it, so it is never shaped.
						{Key: clusters.LabelRole, Operator: corev1.NodeSelectorOpIn, Values: []string{clusters.RoleNode, clusters.RoleGateway, clusters.RoleCloud}},
					}}},
				}}},
				// It must run where the link is cut, as the runtime does.
				Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				TerminationGracePeriodSeconds: ptr(int64(10)),
				Containers: []corev1.Container{{
					Name:    "agent",
					Image:   r.Image,
					Command: []string{"/edgeguard", "agent", "--token-file=/run/secrets/edgefault/token", "--namespace=" + Namespace, fmt.Sprintf("--listen=:%d", AgentPort), "--files=" + RunDir(r.ID)},
					Env:     []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
					Ports:   []corev1.ContainerPort{{Name: "api", ContainerPort: AgentPort}},
					// Ready once it serves: the harness waits for that.
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(AgentPort)}},
						PeriodSeconds: 2},
					SecurityContext: &corev1.SecurityContext{
						// Root for netlink and nftables, with two
						// capabilities (NET_ADMIN to shape, KILL to crash
						// a workload that runs as another user): never
						// privileged.
						RunAsUser:                &root,
						Privileged:               &no,
						AllowPrivilegeEscalation: &no,
						ReadOnlyRootFilesystem:   &yes,
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN", "KILL"}},
						SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "token", MountPath: "/run/secrets/edgefault", ReadOnly: true},
						{Name: "api", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
						{Name: "state", MountPath: "/run/edgefault"},
						{Name: "files", MountPath: DataRoot},
					},
				}},
				AutomountServiceAccountToken: &no,
				Volumes: []corev1.Volume{
					{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: agent.RunObject, DefaultMode: ptr(int32(0o400))}}},
					// Its own API token, projected (short-lived), for the
					// Lease and ConfigMap alone.
					{Name: "api", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3600))}},
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
						{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
					}}}},
					{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
					// The runs' directories: the parent, so that the agent
					// can remove its run's (a mount point cannot go).
					{Name: "files", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: DataRoot, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
				},
			},
		},
	}}
	return
}

func ptr[T any](v T) *T { return &v }

// Deploy creates what the run needs on the cluster (Objects). Anything
// already there from a run that was not removed is refused: remove it
// first (Remove, or edgefault cleanup).
func Deploy(ctx context.Context, cs kubernetes.Interface, r Run) error {
	if len(r.Token) < 16 || r.Image == "" {
		return errors.New("a run needs a token (NewToken) and the runtime's image")
	}
	if errs := validation.IsValidLabelValue(r.ID); r.ID == "" || len(errs) > 0 {
		return fmt.Errorf("run ID %q: %s (NewRunID)", r.ID, strings.Join(errs, "; "))
	}
	ns, sa, role, rb, sec, cm, lease, ds := Objects(r)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("namespace %s is already on the cluster (a run that was not removed?): run edgefault cleanup --provider existing, or delete it", Namespace)
		}
		return fmt.Errorf("create namespace %s: %w", Namespace, err)
	}
	steps := []func() error{
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(Namespace).Create(ctx, sa, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().Roles(Namespace).Create(ctx, role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().RoleBindings(Namespace).Create(ctx, rb, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Secrets(Namespace).Create(ctx, sec, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoordinationV1().Leases(Namespace).Create(ctx, lease, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.AppsV1().DaemonSets(Namespace).Create(ctx, ds, metav1.CreateOptions{})
			return err
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("deploy the run on the cluster: %w (what was made stays until Remove, or edgefault cleanup, deletes namespace %s)", err, Namespace)
		}
	}
	return nil
}

// Renew renews the run's Lease every third of its duration until ctx
// ends; agents clear what they applied once it is no longer renewed. A
// renewal that fails is tried again; Renew gives up (and the run must
// stop: its agents are about to clear) only once the last good renewal is
// two thirds of the Lease old.
func Renew(ctx context.Context, cs kubernetes.Interface) error {
	every := leaseSeconds * time.Second / 3
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, every)
		l, err := cs.CoordinationV1().Leases(Namespace).Get(rctx, agent.RunObject, metav1.GetOptions{})
		if err == nil {
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_, err = cs.CoordinationV1().Leases(Namespace).Update(rctx, l, metav1.UpdateOptions{})
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			last = time.Now()
		case time.Since(last) > 2*every:
			return fmt.Errorf("renew the run's lease: nothing renewed it for %v (%w): its agents are about to clear what they applied", time.Since(last).Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Remove deletes what run id deployed (its namespace, and so all in it)
// and waits, up to wait, until it is gone. A namespace of that name that
// another run, or the user, made is left alone (ErrNotOurs).
func Remove(ctx context.Context, cs kubernetes.Interface, id string, wait time.Duration) error {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", Namespace, err)
	}
	if id == "" {
		return fmt.Errorf("namespace %s: no run ID to check it against: delete it yourself if it is edgefault's (kubectl delete namespace %s)", Namespace, Namespace)
	}
	if ns.Labels[LabelRun] != id {
		return fmt.Errorf("namespace %s (%s=%q) %w %q: left alone", Namespace, LabelRun, ns.Labels[LabelRun], ErrNotOurs, id)
	}
	if ns.DeletionTimestamp != nil {
		slog.Default().Warn("the run's namespace was already being deleted: its directories on the nodes may remain", "dir", DataRoot+"/"+id)
	}
	if ns.DeletionTimestamp == nil {
		if err := removeRunFiles(ctx, cs); err != nil {
			// Reported, not fatal: the namespace goes all the same.
			slog.Default().Warn("removing the run's files on its nodes", "err", err)
		}
		fg := metav1.DeletePropagationForeground
		err = cs.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &ns.UID}})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			// Another namespace of the name now (not ours), or ours
			// already terminating: the wait tells them apart.
		case err != nil:
			return fmt.Errorf("delete namespace %s: %w", Namespace, err)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && got.UID != ns.UID) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s is still being deleted after %v (its finalizers run in the cluster's controller manager)", Namespace, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ErrNotOurs is (wrapped in) Remove's error for a namespace another run or
// the user made.
var ErrNotOurs = errors.New("is not the one made by run")

// removeRunFiles stops the run's workload pods (so that none writes the
// run's directory again, or has the kubelet make it anew) and then asks
// every agent of the run, at once, to remove the run's directory on its
// node, while they still run. An agent that does not answer (its node
// gone) leaves RunDir there: the error says where.
func removeRunFiles(ctx context.Context, cs kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sec, err := cs.CoreV1().Secrets(Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the run's token, to ask its agents to remove the run's directory (%s) on its nodes: %w", DataRoot, err)
	}
	// Not a forced deletion: the pod's object stays until its kubelet
	// has stopped its containers, so that none writes after the removal.
	workloads := metav1.ListOptions{LabelSelector: agent.LabelManagedBy + "=edgefault"}
	var errs []error
	wctx, wcancel := context.WithTimeout(ctx, 40*time.Second)
	defer wcancel()
	for {
		left, err := cs.CoreV1().Pods(Namespace).List(wctx, workloads)
		if err == nil && len(left.Items) == 0 {
			break
		}
		if err == nil {
			for _, p := range left.Items {
				if p.DeletionTimestamp == nil {
					one := int64(1)
					if err := cs.CoreV1().Pods(Namespace).Delete(wctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &one}); err != nil && !apierrors.IsNotFound(err) {
						return fmt.Errorf("stop the run's workload %s: %w", p.Name, err)
					}
				}
			}
		}
		select {
		case <-wctx.Done():
			// Their nodes may be gone: remove what can be.
			errs = append(errs, fmt.Errorf("the run's workload pods had not all stopped after 40 s: %w", wctx.Err()))
		case <-time.After(500 * time.Millisecond):
			continue
		}
		break
	}
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	a := NewAgents(cs, string(sec.Data["token"]))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
			errs = append(errs, fmt.Errorf("the agent %s (node %q) is %s: that node keeps the run's directory under %s", p.Name, p.Spec.NodeName, p.Status.Phase, DataRoot))
			continue
		}
		wg.Add(1)
		go func(node string) {
			defer wg.Done()
			nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := a.RemoveFiles(nctx, node); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s keeps the run's directory under %s: %w", node, DataRoot, err))
				mu.Unlock()
			}
		}(p.Spec.NodeName)
	}
	wg.Wait()
	return errors.Join(errs...)
}
