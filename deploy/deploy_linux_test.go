package deploy_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgefault/edgefault/deploy"
	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/ledger"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

func TestMain(m *testing.M) {
	ledger.RunGateIfInvoked()
	os.Exit(m.Run())
}

// objects decodes the manifests and indexes them by kind.
func objects(t *testing.T) ([]*unstructured.Unstructured, map[string]*unstructured.Unstructured) {
	t.Helper()
	objs, err := deploy.Objects()
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if _, dup := byKind[o.GetKind()]; dup {
			t.Fatalf("two %s objects in the manifests", o.GetKind())
		}
		byKind[o.GetKind()] = o
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "DaemonSet"} {
		if byKind[k] == nil {
			t.Fatalf("no %s in the manifests (got %d objects)", k, len(objs))
		}
	}
	if len(objs) != 3 {
		t.Fatalf("got %d objects, want Namespace, ServiceAccount and DaemonSet", len(objs))
	}
	if objs[0].GetKind() != "Namespace" {
		t.Fatalf("first object is a %s: the Namespace must come first so `kubectl apply` creates it before what lives in it", objs[0].GetKind())
	}
	return objs, byKind
}

func typedDaemonSet(t *testing.T, u *unstructured.Unstructured) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &ds, true); err != nil {
		t.Fatalf("DaemonSet does not convert strictly to apps/v1: %v", err)
	}
	return &ds
}

// The manifests follow the runtime's policy: the gate is a native sidecar
// whose startup probe holds the workload until the gate opens and never
// gives up within a day; readiness follows the gate, liveness never does;
// nothing runs privileged; the pod fits a 512 MiB device.
func TestManifestsPolicy(t *testing.T) {
	_, byKind := objects(t)
	ds := typedDaemonSet(t, byKind["DaemonSet"])
	pod := ds.Spec.Template.Spec

	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod automountServiceAccountToken is not false")
	}
	if v, found, _ := unstructured.NestedBool(byKind["ServiceAccount"].Object, "automountServiceAccountToken"); !found || v {
		t.Error("ServiceAccount automountServiceAccountToken is not false")
	}
	if pod.ServiceAccountName != byKind["ServiceAccount"].GetName() {
		t.Errorf("pod runs as service account %q, want %q", pod.ServiceAccountName, byKind["ServiceAccount"].GetName())
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod does not require runAsNonRoot")
	}

	var sidecars []corev1.Container
	for _, c := range pod.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars = append(sidecars, c)
		}
	}
	if len(sidecars) != 1 || sidecars[0].Name != "edgeguard" {
		t.Fatalf("want exactly one native sidecar (init container with restartPolicy Always) named edgeguard, got %d", len(sidecars))
	}
	gate := sidecars[0]
	if p := gate.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Error("sidecar startup probe is not an HTTP GET of /readyz")
	} else if d := time.Duration(p.PeriodSeconds) * time.Duration(p.FailureThreshold) * time.Second; d < 24*time.Hour {
		t.Errorf("sidecar startup probe gives up after %v: a long outage at boot would restart the gate (want >= 24h)", d)
	}
	if p := gate.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Error("sidecar readiness probe is not an HTTP GET of /readyz")
	}
	// The buffer forwards with the site's sink token, from a Secret.
	token := false
	for _, e := range gate.Env {
		if e.Name == "EDGEGUARD_SINK_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" {
			token = true
		}
	}
	if !token {
		t.Error("the sidecar has no EDGEGUARD_SINK_TOKEN from a Secret: the sink would refuse every batch")
	}

	// The buffer's state is the gate's alone; other containers reach the
	// buffer through the socket, whose directory they mount read-only.
	socketArg := ""
	for _, a := range gate.Args {
		if v, ok := strings.CutPrefix(a, "--socket="); ok {
			socketArg = v
		}
	}
	mounts := map[string]string{}
	for _, m := range gate.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if socketArg == "" || mounts["socket"] == "" || !strings.HasPrefix(socketArg, mounts["socket"]+"/") {
		t.Errorf("the gate serves no records socket in its socket mount (--socket=%q, mounts %v)", socketArg, mounts)
	}
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			switch {
			case m.Name == "state":
				t.Errorf("container %s mounts the buffer's state directory", c.Name)
			case m.Name == "socket" && !m.ReadOnly:
				t.Errorf("container %s mounts the socket directory writable", c.Name)
			}
		}
	}

	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	var reqs, lims resource.Quantity
	for _, c := range all {
		if p := c.LivenessProbe; p != nil && (p.HTTPGet == nil || p.HTTPGet.Path == "/readyz" || strings.HasPrefix(p.HTTPGet.Path, "/v1/gate")) {
			t.Errorf("container %s: liveness probe follows the gate (or is not an HTTP GET): restarting on a bad link fixes nothing", c.Name)
		}
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s does not set allowPrivilegeEscalation: false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s root filesystem is writable", c.Name)
		}
		// The gate's container may add NET_ADMIN (failover's route
		// change) and nothing else; every other container adds nothing
		// and runs as non-root.
		wantAdd := 0
		if c.Name == "edgeguard" {
			wantAdd = 1
			if len(sc.Capabilities.Add) != 1 || sc.Capabilities.Add[0] != "NET_ADMIN" {
				t.Errorf("container %s adds %v, want NET_ADMIN only", c.Name, sc.Capabilities.Add)
			}
		} else if sc.RunAsUser != nil && *sc.RunAsUser == 0 || sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			t.Errorf("container %s runs as root", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != wantAdd {
			t.Errorf("container %s does not drop ALL capabilities (or adds more than it may)", c.Name)
		}
		r, ok := c.Resources.Requests[corev1.ResourceMemory]
		if !ok {
			t.Errorf("container %s has no memory request", c.Name)
		}
		l, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			t.Errorf("container %s has no memory limit", c.Name)
		}
		reqs.Add(r)
		lims.Add(l)
	}
	if reqs.Cmp(resource.MustParse("64Mi")) > 0 {
		t.Errorf("memory requests add up to %s, want <= 64Mi", reqs.String())
	}
	if lims.Cmp(resource.MustParse("128Mi")) > 0 {
		t.Errorf("memory limits add up to %s, want <= 128Mi", lims.String())
	}
	t.Logf("pod memory: requests %s, limits %s", reqs.String(), lims.String())
}

// apiClient talks to a real control plane with dynamic objects, mapping
// kinds to resources through the server's own discovery.
type apiClient struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	mu     sync.Mutex
	warns  []string
}

func (a *apiClient) HandleWarningHeader(code int, agent, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warns = append(a.warns, text)
}

func (a *apiClient) takeWarnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.warns
	a.warns = nil
	return w
}

func (a *apiClient) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

func (a *apiClient) create(ctx context.Context, u *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	ri, err := a.resource(u)
	if err != nil {
		return nil, err
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Create(ctx, u.DeepCopy(), opts)
}

// The manifests are accepted by a real kube-apiserver (server-side dry run
// with strict field validation: defaulting, validation and admission all
// run, nothing is stored), and the same dry run refuses broken variants of
// the DaemonSet, which proves it validates.
func TestManifestsPassServerSideDryRun(t *testing.T) {
	objs, byKind := objects(t)

	ctx := context.Background()
	cp := kubetest.ControlPlane(t, "deploy", false)

	a := &apiClient{}
	cfg := rest.CopyConfig(cp.Admin)
	cfg.WarningHandler = a
	var err error
	a.dyn, err = dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	a.mapper = restmapper.NewDiscoveryRESTMapper(groups)

	// The Namespace is dry-run like everything else, then created for real:
	// the namespaced objects' dry runs need it to exist.
	ns := byKind["Namespace"]
	if _, err := a.create(ctx, ns, true); err != nil {
		t.Fatalf("dry-run create Namespace %s: %v", ns.GetName(), err)
	}
	if _, err := a.create(ctx, ns, false); err != nil {
		t.Fatalf("create Namespace %s: %v", ns.GetName(), err)
	}
	for _, o := range objs {
		if o == ns {
			continue
		}
		got, err := a.create(ctx, o, true)
		if err != nil {
			t.Errorf("dry-run create %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			continue
		}
		if w := a.takeWarnings(); len(w) != 0 {
			t.Errorf("dry-run create %s %s: apiserver warned %q", o.GetKind(), o.GetName(), w)
		}
		t.Logf("dry-run create %s %s/%s: accepted", o.GetKind(), o.GetNamespace(), o.GetName())
		if o.GetKind() == "DaemonSet" {
			// What the server would store still has the gate as a native
			// sidecar with its 24 h startup probe (nothing was dropped).
			ds := typedDaemonSet(t, got)
			ic := ds.Spec.Template.Spec.InitContainers
			if len(ic) != 1 || ic[0].RestartPolicy == nil || *ic[0].RestartPolicy != corev1.ContainerRestartPolicyAlways || ic[0].StartupProbe == nil || ic[0].StartupProbe.FailureThreshold != 17280 {
				t.Errorf("the server's DaemonSet lost the sidecar's restartPolicy or startup probe: %+v", ic)
			}
		}
	}
	// Pod Security: the pod meets the restricted level except for exactly
	// what failover and durability need, all of it in the gate's container
	// or the pod's volumes: the node's network namespace, NET_ADMIN, root
	// for that capability to take effect, and the hostPath state. Ask the
	// apiserver to warn about restricted on the real namespace and compare
	// what it says with that list: anything more is a regression.
	nsClient, err := a.resource(ns)
	if err != nil {
		t.Fatal(err)
	}
	label := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/warn":"restricted"}}}`)
	if _, err := nsClient.Patch(ctx, ns.GetName(), types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	a.takeWarnings()
	// Pod Security admission reads namespaces through an informer, so the
	// label takes effect a moment after the patch (on a loaded CI machine,
	// more than a moment): dry-run again until it warns, for at most 30 s.
	var warns []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := a.create(ctx, byKind["DaemonSet"], true); err != nil {
			t.Fatalf("dry-run create DaemonSet under warn=restricted: %v", err)
		}
		warns = a.takeWarnings()
		if len(warns) != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := `would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), ` +
		`unrestricted capabilities (container "edgeguard" must not include "NET_ADMIN" in securityContext.capabilities.add), ` +
		`restricted volume types (volumes "state", "workload-events", "socket" use restricted volume type "hostPath"), ` +
		`runAsNonRoot != true (container "edgeguard" must not set securityContext.runAsNonRoot=false), ` +
		`runAsUser=0 (container "edgeguard" must not set runAsUser=0)`
	if len(warns) != 1 || warns[0] != want {
		t.Errorf("Pod Security restricted warnings %q: want exactly %q", warns, want)
	}
	t.Logf("Pod Security restricted says: %q", warns)

	// A dry run stores nothing.
	for _, o := range objs {
		if o == ns {
			continue
		}
		ri, err := a.resource(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s %s exists after a dry run (err %v)", o.GetKind(), o.GetName(), err)
		}
	}

	// Negative controls: the same dry run must refuse these. (Kubernetes
	// 1.37 accepts restartPolicy Never or OnFailure on an init container
	// once its probes are gone: such a pod is valid but its workload would
	// never start behind a gate that never exits. TestManifestsPolicy, not
	// the apiserver, guards the sidecar's restartPolicy.)
	sidecar := func(u *unstructured.Unstructured, f func(c map[string]any)) {
		editContainer(t, u, "initContainers", 0, f)
	}
	workload := func(u *unstructured.Unstructured, f func(c map[string]any)) { editContainer(t, u, "containers", 0, f) }
	for _, tc := range []struct {
		name   string
		mutate func(u *unstructured.Unstructured)
		want   string // in the apiserver's message
	}{
		{"unknown field in a container (strict field validation)", func(u *unstructured.Unstructured) {
			workload(u, func(c map[string]any) { c["restartPolicyy"] = "Always" })
		}, `unknown field "spec.template.spec.containers[0].restartPolicyy"`},
		{"sidecar restartPolicy Never", func(u *unstructured.Unstructured) {
			sidecar(u, func(c map[string]any) { c["restartPolicy"] = "Never" })
		}, "may not be set for init containers without restartPolicy=Always"},
		{"sidecar restartPolicy not a supported value", func(u *unstructured.Unstructured) {
			sidecar(u, func(c map[string]any) { c["restartPolicy"] = "Sometimes" })
		}, `spec.template.spec.initContainers[0].restartPolicy: Unsupported value: "Sometimes"`},
		{"startupProbe on a regular init container", func(u *unstructured.Unstructured) {
			sidecar(u, func(c map[string]any) {
				delete(c, "restartPolicy")
				delete(c, "readinessProbe")
				delete(c, "livenessProbe")
			})
		}, "spec.template.spec.initContainers[0].startupProbe"},
		{"memory limit below request", func(u *unstructured.Unstructured) {
			workload(u, func(c map[string]any) {
				if err := unstructured.SetNestedField(c, "8Mi", "resources", "limits", "memory"); err != nil {
					t.Fatal(err)
				}
			})
		}, "spec.template.spec.containers[0].resources.requests"},
		{"probe port that is not a valid port name", func(u *unstructured.Unstructured) {
			sidecar(u, func(c map[string]any) {
				if err := unstructured.SetNestedField(c, "ports-that-is-far-too-long", "readinessProbe", "httpGet", "port"); err != nil {
					t.Fatal(err)
				}
			})
		}, "spec.template.spec.initContainers[0].readinessProbe.httpGet.port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := byKind["DaemonSet"].DeepCopy()
			tc.mutate(bad)
			_, err := a.create(ctx, bad, true)
			if err == nil {
				t.Fatalf("the apiserver accepted a DaemonSet with %s", tc.name)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("refused for another reason than validation: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refused, but not because of %s: %v", tc.want, err)
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

// editContainer edits the i-th container of a DaemonSet's pod template in
// list ("containers" or "initContainers").
func editContainer(t *testing.T, u *unstructured.Unstructured, list string, i int, f func(c map[string]any)) {
	t.Helper()
	path := []string{"spec", "template", "spec", list}
	cs, found, err := unstructured.NestedSlice(u.Object, path...)
	if err != nil || !found || len(cs) <= i {
		t.Fatalf("DaemonSet has no %s[%d]: %v", list, i, err)
	}
	c, ok := cs[i].(map[string]any)
	if !ok {
		t.Fatalf("%s[%d] is a %T", list, i, cs[i])
	}
	f(c)
	if err := unstructured.SetNestedSlice(u.Object, cs, path...); err != nil {
		t.Fatal(err)
	}
}
