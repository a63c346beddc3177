package kind

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/deploy"
	"github.com/edgefault/edgefault/ledger"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// KindContainer is a ledger entry for a Docker container this package
// started (Name).
const KindContainer = "docker-container"

// Cloud ports, as the embedded fleet's cloud and deploy/edgeguard.yaml use
// them.
const (
	SpeedPort   = 8080
	ContentPort = 8081
	SinkPort    = 8082
)

// EdgeguardImage writes the runtime's image: the edgeguard binary alone,
// FROM scratch. Its tag is the binary's digest, so a rebuilt binary is a
// new image and a node never runs a stale one under the same name.
func EdgeguardImage(tmp, edgeguard string) (ref string, archive []byte, err error) {
	return BinaryImage(tmp, "edgefault/edgeguard", edgeguard)
}

// BinaryImage writes an image of one static binary, FROM scratch, at
// /<its name> and its entrypoint, tagged repo:<the binary's digest>: how
// a user's app becomes an image here, with no base image and no registry.
func BinaryImage(tmp, repo, binary string) (ref string, archive []byte, err error) {
	if err := static(binary); err != nil {
		return "", nil, err
	}
	f, err := os.Open(binary)
	if err != nil {
		return "", nil, fmt.Errorf("the binary for image %s: %w", repo, err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", nil, err
	}
	ref = repo + ":" + hex.EncodeToString(h.Sum(nil))[:16]
	entry := "/" + filepath.Base(binary)
	var buf bytes.Buffer
	err = WriteImage(&buf, tmp, Image{
		Ref: ref, Layers: []Layer{FilesLayer(map[string]string{entry: binary})},
		Entrypoint: []string{entry}, Env: []string{"PATH=/"},
	})
	return ref, buf.Bytes(), err
}

// static checks that a binary needs no dynamic loader: an image FROM
// scratch has none, and the container would fail with "exec: no such file
// or directory".
func static(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, and an image FROM scratch has no loader: build it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// LoadDockerImage loads an image archive into the Docker engine (for
// containers outside the cluster, such as the cloud).
func LoadDockerImage(ctx context.Context, archive []byte) error {
	_, err := docker(ctx, bytes.NewReader(archive), "load", "-q")
	return err
}

// CloudSpec is the cloud a cluster's runtime talks to.
type CloudSpec struct {
	// Image is the edgeguard image (EdgeguardImage), loaded into Docker.
	Image string
	// Credentials is the sink's credentials JSON (runtime/sink).
	Credentials []byte
	// Name names its containers (default <cluster>-cloud).
	Name string
	// Network is the Docker network it is on (default the cluster's; a
	// WAN's, for sites behind gateways).
	Network string
}

// Cloud is the cloud's containers on a cluster's network.
type Cloud struct {
	// Address is the cloud's address on the cluster's network.
	Address netip.Addr
	// Containers are its containers, the speed server's first (the
	// others share its network namespace).
	Containers []string
	// Dir holds its data and evidence on this machine (/data inside).
	Dir string
}

// StartCloud runs the speed-test server, the content server and the sink
// as containers on the cluster's Docker network, each recorded in the
// ledger before it starts. The sink's data and every event log are under
// the returned Dir.
func (c *Clusters) StartCloud(ctx context.Context, cl *Cluster, s CloudSpec) (_ *Cloud, err error) {
	main := s.Name
	if main == "" {
		main = cl.Name + "-cloud"
	}
	if !dockerNameRE.MatchString(main) {
		return nil, fmt.Errorf("cloud name %q: use lower-case letters, digits and '-'", main)
	}
	network := s.Network
	if network == "" {
		network = cl.Network
	}
	dir := filepath.Join(c.dir, main)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "credentials.json"), s.Credentials, 0o600); err != nil {
		return nil, err
	}
	cloud := &Cloud{Dir: dir}
	defer func() {
		if err != nil {
			_ = c.StopCloud(context.WithoutCancel(ctx), cloud)
		}
	}()
	for _, svc := range []struct {
		name string
		args []string
	}{
		{"speedserver", []string{fmt.Sprintf("--listen=:%d", SpeedPort)}},
		{"content", []string{fmt.Sprintf("--listen=:%d", ContentPort)}},
		{"sink", []string{fmt.Sprintf("--listen=:%d", SinkPort), "--db=/data/sink.db", "--credentials=/data/credentials.json"}},
	} {
		name := main
		net := "--network=" + network
		if svc.name != "speedserver" {
			name = main + "-" + svc.name
			net = "--network=container:" + main
		}
		if err := nameFree(ctx, name); err != nil {
			return nil, err
		}
		if err := c.ledger.Record(c.owner, ledger.Entry{Kind: KindContainer, Name: name, Time: time.Now()}); err != nil {
			return nil, err
		}
		args := append([]string{"run", "-d", "--name", name, net, "--label", "io.edgefault.owner=" + c.owner, "--label", labelCluster + "=" + cl.Name,
			"-v", dir + ":/data", s.Image, svc.name, "--node=cloud", "--events=/data/cloud-" + svc.name + ".jsonl"}, svc.args...)
		// Listed before it runs, so a failed start is removed too.
		cloud.Containers = append(cloud.Containers, name)
		if _, err := docker(ctx, nil, args...); err != nil {
			return nil, fmt.Errorf("start the cloud's %s: %w", svc.name, err)
		}
		if out, err := docker(ctx, nil, "inspect", "--format", "{{.State.Running}}", name); err != nil || strings.TrimSpace(string(out)) != "true" {
			return nil, fmt.Errorf("the cloud's %s (container %s) exited at once: %s", svc.name, name, containerLogTail(ctx, name))
		}
	}
	if cloud.Address, err = containerAddr(ctx, main, network); err != nil {
		return nil, err
	}
	// A container that runs has not necessarily bound its port yet; the
	// first request must not race it.
	for i, port := range []int{SpeedPort, ContentPort, SinkPort} {
		if err := waitListening(ctx, netip.AddrPortFrom(cloud.Address, uint16(port)), 30*time.Second); err != nil {
			return nil, fmt.Errorf("the cloud's container %s: %w; its log: %s", cloud.Containers[i], err, containerLogTail(ctx, cloud.Containers[i]))
		}
	}
	return cloud, nil
}

// containerLogTail is the last lines a container logged.
func containerLogTail(ctx context.Context, name string) []byte {
	logs, _ := exec.CommandContext(ctx, "docker", "logs", "--tail", "20", name).CombinedOutput()
	return bytes.TrimSpace(logs)
}

// waitListening waits until something accepts TCP at a (a container's
// address on a Docker network, which the host routes to).
func waitListening(ctx context.Context, a netip.AddrPort, within time.Duration) error {
	var d net.Dialer
	return waitDial(ctx, d.DialContext, a, within, func(err error) bool { return err == nil })
}

// waitDial dials a every 100 ms until done says the outcome is the one
// awaited, or within has passed.
func waitDial(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), a netip.AddrPort, within time.Duration, done func(error) bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := dial(dctx, "tcp", a.String())
		dcancel()
		if c != nil {
			c.Close()
		}
		if done(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing answers at %s after %s: %w", a, within, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StopCloud removes the cloud's containers.
func (c *Clusters) StopCloud(ctx context.Context, cloud *Cloud) error {
	var errs []error
	for i := len(cloud.Containers) - 1; i >= 0; i-- {
		if err := removeContainer(ctx, cloud.Containers[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, c.ledger.Forget(c.owner, ledger.Entry{Kind: KindContainer, Name: cloud.Containers[i]}))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(cloud.Dir)
}

func removeContainer(ctx context.Context, name string) error {
	if _, err := docker(ctx, nil, "inspect", "--format", "{{.Id}}", name); err != nil {
		if notFound(err) {
			return nil
		}
		return err
	}
	_, err := docker(ctx, nil, "rm", "-f", "-v", name)
	return err
}

// RuntimeSpec is how the runtime is deployed on a cluster.
type RuntimeSpec struct {
	// Image is the edgeguard image (EdgeguardImage), loaded into the
	// nodes.
	Image string
	// Cloud is where the runtime's speed tests, fetches and deliveries go:
	// the edgefault-cloud Service points at it.
	Cloud netip.Addr
	// SinkToken is the site's token for the sink (the edgeguard-sink
	// Secret).
	SinkToken string
}

// DeployRuntime installs deploy/edgeguard.yaml and deploy/failover.yaml as
// shipped (only the image is set), the Secret they read, the
// edgefault-cloud Service (without a selector: its endpoint is the cloud
// container) and, on every node, the workload's event directory owned by
// uid 65532 as docs/deploy.md asks.
func (c *Clusters) DeployRuntime(ctx context.Context, cl *Cluster, s RuntimeSpec) error {
	for _, n := range cl.Nodes {
		if _, err := docker(ctx, nil, "exec", n.Name, "sh", "-c", "mkdir -p /var/lib/edgeguard-workload && chown 65532:65532 /var/lib/edgeguard-workload"); err != nil {
			return err
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	objs, err := deploy.Objects()
	if err != nil {
		return err
	}
	fo, err := deploy.FailoverObjects()
	if err != nil {
		return err
	}
	objs = append(objs, fo...)
	// The DaemonSets last: their gates probe the edgefault-cloud Service
	// as they start, which must by then lead to the cloud.
	var daemons []*unstructured.Unstructured
	apply := func(o *unstructured.Unstructured) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		body, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		ri := dyn.Resource(m.Resource)
		var r dynamic.ResourceInterface = ri
		if ns := o.GetNamespace(); ns != "" {
			r = ri.Namespace(ns)
		}
		if _, err := r.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "edgefault", Force: ptr(true)}); err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, o.GetName(), err)
		}
		return nil
	}
	for _, o := range objs {
		if o.GetKind() == "DaemonSet" {
			if err := setImages(o, s.Image); err != nil {
				return err
			}
			daemons = append(daemons, o)
			continue
		}
		if err := apply(o); err != nil {
			return err
		}
	}
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	const ns = "edgefault-system"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "edgeguard-sink", Namespace: ns}, StringData: map[string]string{"token": s.SinkToken}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "edgefault-cloud", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "speed", Port: SpeedPort}, {Name: "content", Port: ContentPort}, {Name: "sink", Port: SinkPort},
		}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range svc.Spec.Ports {
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Port: ptr(p.Port), Protocol: ptr(corev1.ProtocolTCP)})
	}
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "edgefault-cloud", Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: "edgefault-cloud", discoveryv1.LabelManagedBy: "edgefault",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{s.Cloud.String()}}},
		Ports:       ports,
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, eps, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, o := range daemons {
		if err := apply(o); err != nil {
			return err
		}
	}
	return nil
}

// setImages points every container of a DaemonSet at image.
func setImages(o *unstructured.Unstructured, image string) error {
	for _, field := range []string{"initContainers", "containers"} {
		list, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
		if err != nil {
			return err
		}
		for i := range list {
			if m, ok := list[i].(map[string]any); ok {
				m["image"] = image
			}
		}
		if err := unstructured.SetNestedSlice(o.Object, list, "spec", "template", "spec", field); err != nil {
			return err
		}
	}
	return nil
}

// ReadNodeFile reads a file from a node container (evidence the runtime
// wrote on the node's disk).
func ReadNodeFile(ctx context.Context, node, path string) ([]byte, error) {
	return docker(ctx, nil, "exec", node, "cat", path)
}

func ptr[T any](v T) *T { return &v }
