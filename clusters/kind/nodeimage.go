package kind

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
)

// KindVersion is the kind library this build links, whose base files the
// node image is made of (kept equal to go.mod by a test).
const KindVersion = "v0.33.0"

// NodeImageRepo is the repository node images are tagged in.
const NodeImageRepo = "edgefault/kind-node"

// FlannelImage is flanneld as the node image preloads it (flannel's own
// image cannot be fetched offline).
const FlannelImage = "docker.io/edgefault/flannel:" + k8sbin.FlannelVersion

// recipe changes when the way the image is made changes, so a cached image
// made the old way is rebuilt.
const recipe = "4"

// DebianSuite and DebianPackages make the node's root filesystem.
const DebianSuite = "bookworm"

// DebianPackages are what a kind node runs on: systemd as init, containerd
// and runc, the CNI plugins, the tools kubelet, kubeadm and kube-proxy call.
var DebianPackages = []string{
	"systemd", "dbus", "iproute2", "iptables", "nftables", "kmod", "mount", "util-linux",
	"ca-certificates", "procps", "conntrack", "ethtool", "socat", "jq", "bash",
	"containerd", "runc", "containernetworking-plugins", "libseccomp2", "pigz", "e2fsprogs",
}

//go:embed pause/main.go
var pauseSource []byte

// NodeImageOptions configure BuildNodeImage.
type NodeImageOptions struct {
	// Cache holds the Kubernetes binaries (edgefault setup --kind); the
	// root filesystem and work files are kept under Cache.Dir/kind.
	Cache k8sbin.Cache
	// Mirror is the Debian mirror debootstrap fetches from.
	Mirror string
	// Force rebuilds even a cached image (and root filesystem).
	Force bool
	// Progress gets one line per step; nil discards them.
	Progress io.Writer
}

// NodeImage is a built node image.
type NodeImage struct {
	// Ref is its name ("edgefault/kind-node:v1.37.2-0123456789ab").
	Ref string
	// Cached: it was there already.
	Cached bool
	// Size is its size in bytes as the engine reports it.
	Size int64
	// Steps are how long each step took (empty when cached).
	Steps []Step
}

// Step is one timed step of a build.
type Step struct {
	Name string
	Took time.Duration
}

// nodeComponents are the cached binaries a node image holds.
var nodeComponents = []string{"kubelet", "kubeadm", "kubectl", "kube-proxy", "crictl", "coredns", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "flanneld"}

// NodeImageRef is the image BuildNodeImage makes from what is in cache:
// its tag carries the Kubernetes version and a hash of every input, so a
// changed pin names another image.
func NodeImageRef(cache k8sbin.Cache) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s kind %s debian %s %s\n", recipe, KindVersion, DebianSuite, strings.Join(DebianPackages, ","))
	h.Write(pauseSource)
	for _, c := range nodeComponents {
		if _, err := cache.Lookup(c); err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s\n", c, cache.Digest(c))
	}
	return fmt.Sprintf("%s:%s-%s", NodeImageRepo, k8sbin.KubernetesVersion, hex.EncodeToString(h.Sum(nil))[:12]), nil
}

// BuildNodeImage makes the kind node image (or finds it made): a Debian
// root filesystem from debootstrap, kind's base files from the kind module,
// the Kubernetes binaries from the cache, and every image kubeadm will ask
// for preloaded into the node's containerd store. It needs root, a running
// Docker engine, debootstrap, containerd and the go command.
func BuildNodeImage(ctx context.Context, o NodeImageOptions) (NodeImage, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	ref, err := NodeImageRef(o.Cache)
	if err != nil {
		return NodeImage{}, err
	}
	if !o.Force {
		if size, err := imageSize(ctx, ref); err == nil {
			return NodeImage{Ref: ref, Cached: true, Size: size}, nil
		}
	}
	for _, tool := range []string{"debootstrap", "containerd", "ctr", "go", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return NodeImage{}, fmt.Errorf("building a node image needs %s: %w (apt-get install debootstrap docker.io; Go from go.dev)", tool, err)
		}
	}
	b := &nodeBuilder{o: o, ref: ref, dir: filepath.Join(o.Cache.Dir, "kind")}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return NodeImage{}, err
	}
	work, err := os.MkdirTemp(b.dir, "build-")
	if err != nil {
		return NodeImage{}, err
	}
	defer os.RemoveAll(work)
	b.work, b.root = work, filepath.Join(work, "rootfs")
	for _, s := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"debian root filesystem", b.rootfs},
		{"kind base files", b.baseFiles},
		{"kubernetes binaries", b.binaries},
		{"preloaded images", b.images},
		{"import into docker", b.commit},
	} {
		fmt.Fprintf(o.Progress, "node image: %s ...\n", s.name)
		start := time.Now()
		if err := s.fn(ctx); err != nil {
			return NodeImage{}, fmt.Errorf("node image %s: %s: %w", ref, s.name, err)
		}
		b.steps = append(b.steps, Step{s.name, time.Since(start)})
		fmt.Fprintf(o.Progress, "node image: %s done in %s\n", s.name, time.Since(start).Round(100*time.Millisecond))
	}
	size, err := imageSize(ctx, ref)
	if err != nil {
		return NodeImage{}, err
	}
	return NodeImage{Ref: ref, Size: size, Steps: b.steps}, nil
}

type nodeBuilder struct {
	o         NodeImageOptions
	ref       string
	dir, work string
	root      string
	steps     []Step
}

// rootfsTar is the cached debootstrap result for the pinned suite and
// packages.
func (b *nodeBuilder) rootfsTar() string {
	h := sha256.Sum256([]byte(DebianSuite + " " + strings.Join(DebianPackages, ",")))
	return filepath.Join(b.dir, "rootfs-"+DebianSuite+"-"+hex.EncodeToString(h[:])[:12]+".tar")
}

func (b *nodeBuilder) rootfs(ctx context.Context) error {
	cached := b.rootfsTar()
	if _, err := os.Stat(cached); err != nil || b.o.Force {
		dir := filepath.Join(b.work, "debootstrap")
		args := []string{"--variant=minbase", "--include=" + strings.Join(DebianPackages, ","), DebianSuite, dir, b.o.Mirror}
		if err := run(ctx, nil, "debootstrap", args...); err != nil {
			return fmt.Errorf("debootstrap from %s (is the mirror reachable?): %w", b.o.Mirror, err)
		}
		// Nothing of apt's caches is needed on a node.
		for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
			entries, _ := os.ReadDir(filepath.Join(dir, p))
			for _, e := range entries {
				if e.Name() != "partial" && e.Name() != "lock" {
					os.RemoveAll(filepath.Join(dir, p, e.Name()))
				}
			}
		}
		if err := run(ctx, nil, "tar", "-C", dir, "--numeric-owner", "-cf", cached+".tmp", "."); err != nil {
			return err
		}
		if err := os.Rename(cached+".tmp", cached); err != nil {
			return err
		}
		os.RemoveAll(dir)
	}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		return err
	}
	return run(ctx, nil, "tar", "-C", b.root, "--numeric-owner", "-xpf", cached)
}

// kindModuleDir downloads (or finds in the module cache) the kind module
// the base files come from.
func kindModuleDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/kind@"+KindVersion)
	cmd.Dir = os.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kind@%s: %w: %s", KindVersion, err, stderr.String())
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kind@%s: %v %s", KindVersion, err, m.Error)
	}
	return m.Dir, nil
}

// baseFiles does what kind's base image Dockerfile does, on the root
// filesystem: its files, systemd trimmed to what a node runs, the units
// enabled, containerd's base OCI spec.
func (b *nodeBuilder) baseFiles(ctx context.Context) error {
	mod, err := kindModuleDir(ctx)
	if err != nil {
		return err
	}
	files := filepath.Join(mod, "images", "base", "files")
	for _, c := range []struct{ src, dst string }{
		{"usr/local/bin", "usr/local/bin"}, {"kind", "kind"}, {"etc", "etc"},
	} {
		if err := copyTree(filepath.Join(files, c.src), filepath.Join(b.root, c.dst)); err != nil {
			return err
		}
	}
	for _, glob := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(b.root, glob))
		for _, m := range matches {
			os.Remove(m)
		}
	}
	if err := appendFile(filepath.Join(b.root, "etc/systemd/journald.conf"), "ReadKMsg=no\n"); err != nil {
		return err
	}
	os.Remove(filepath.Join(b.root, "sbin/init"))
	if err := os.Symlink("/usr/lib/systemd/systemd", filepath.Join(b.root, "sbin/init")); err != nil {
		return err
	}
	// kind's containerd unit runs /usr/local/bin/containerd; Debian's is
	// in /usr/bin.
	if err := os.Symlink("/usr/bin/containerd", filepath.Join(b.root, "usr/local/bin/containerd")); err != nil {
		return err
	}
	if err := run(ctx, nil, "systemctl", "--root="+b.root, "enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"); err != nil {
		return err
	}
	if err := run(ctx, nil, "systemctl", "--root="+b.root, "mask", "systemd-binfmt.service"); err != nil {
		return err
	}
	for _, d := range []string{"etc/kubernetes/manifests", "opt/cni/bin", "etc/cni/net.d", "kind/manifests"} {
		if err := os.MkdirAll(filepath.Join(b.root, d), 0o755); err != nil {
			return err
		}
	}
	// The spec kind's containerd config points at: containerd's default
	// without rlimits (as kind does). kind also adds a createContainer
	// hook that gives each container its own product_uuid; nothing here
	// reads it, and it would run bash and jq at every container start.
	var spec bytes.Buffer
	if err := run(ctx, &spec, "chroot", b.root, "ctr", "oci", "spec"); err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(spec.Bytes(), &doc); err != nil {
		return fmt.Errorf("ctr oci spec: %w", err)
	}
	if p, ok := doc["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	out, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(b.root, "etc/containerd/cri-base.json"), out, 0o644); err != nil {
		return err
	}
	// CNI plugins where kubelet's containerd looks for them.
	plugins, _ := filepath.Glob(filepath.Join(b.root, "usr/lib/cni/*"))
	for _, p := range plugins {
		if err := os.Symlink("/usr/lib/cni/"+filepath.Base(p), filepath.Join(b.root, "opt/cni/bin", filepath.Base(p))); err != nil {
			return err
		}
	}
	// kind reads this only for its default CNI, which edgefault never
	// uses (kindnetd cannot be fetched offline): the provider installs
	// flannel.
	return os.WriteFile(filepath.Join(b.root, "kind/manifests/default-cni.yaml"), []byte("# edgefault's node image: the provider installs flannel (see docs/kind.md)\napiVersion: v1\nkind: List\nitems: []\n"), 0o644)
}

func (b *nodeBuilder) binaries(ctx context.Context) error {
	place := map[string]string{"kubelet": "usr/bin", "kubeadm": "usr/bin", "kubectl": "usr/bin", "crictl": "usr/local/bin"}
	for name, dir := range place {
		src, err := b.o.Cache.Lookup(name)
		if err != nil {
			return err
		}
		if err := copyFile(src, filepath.Join(b.root, dir, name), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(b.root, "kind/version"), []byte(k8sbin.KubernetesVersion+"\n"), 0o644)
}

// controlPlaneImages maps what kubeadm asks for to the cached binary each
// image runs.
func (b *nodeBuilder) controlPlaneImages(ctx context.Context, pause string) ([]Image, error) {
	var out bytes.Buffer
	kubeadm, err := b.o.Cache.Lookup("kubeadm")
	if err != nil {
		return nil, err
	}
	if err := run(ctx, &out, kubeadm, "config", "images", "list", "--kubernetes-version", k8sbin.KubernetesVersion); err != nil {
		return nil, err
	}
	var imgs []Image
	for _, ref := range strings.Fields(out.String()) {
		repo := ref[strings.LastIndex(ref, "/")+1:]
		repo = repo[:strings.Index(repo, ":")]
		switch repo {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd":
			bin, err := b.o.Cache.Lookup(repo)
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, Image{Ref: ref, Layers: []Layer{FilesLayer(map[string]string{"/usr/local/bin/" + repo: bin})}})
		case "kube-proxy":
			// kube-proxy programs iptables: it runs on the node's own
			// Debian filesystem.
			bin, err := b.o.Cache.Lookup(repo)
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, Image{Ref: ref, Layers: []Layer{TarLayer(b.rootfsTar()), FilesLayer(map[string]string{"/usr/local/bin/kube-proxy": bin})}})
		case "coredns":
			bin, err := b.o.Cache.Lookup("coredns")
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, Image{Ref: ref, Layers: []Layer{FilesLayer(map[string]string{"/coredns": bin})}, Entrypoint: []string{"/coredns"}})
		case "pause":
			imgs = append(imgs, Image{Ref: ref, Layers: []Layer{FilesLayer(map[string]string{"/pause": pause})}, Entrypoint: []string{"/pause"}})
		default:
			return nil, fmt.Errorf("kubeadm %s asks for %s, which this builder cannot make", k8sbin.KubernetesVersion, ref)
		}
	}
	// flanneld, the pod network (Flannel in cluster.go): it programs
	// iptables and its DaemonSet writes the CNI config with a shell, so it
	// runs on the node's Debian filesystem too.
	flanneld, err := b.o.Cache.Lookup("flanneld")
	if err != nil {
		return nil, err
	}
	imgs = append(imgs, Image{Ref: FlannelImage, Layers: []Layer{TarLayer(b.rootfsTar()), FilesLayer(map[string]string{"/opt/bin/flanneld": flanneld})}})
	return imgs, nil
}

// images preloads every image kubeadm will ask for into the node's
// containerd store, by running containerd on this machine against the
// root filesystem's store (the same Debian containerd the node runs).
func (b *nodeBuilder) images(ctx context.Context) error {
	pause, err := buildPause(ctx, b.work)
	if err != nil {
		return err
	}
	imgs, err := b.controlPlaneImages(ctx, pause)
	if err != nil {
		return err
	}
	// The sandbox image is the pause image kubeadm lists.
	for _, img := range imgs {
		if strings.Contains(img.Ref, "/pause:") {
			if err := setSandboxImage(filepath.Join(b.root, "etc/containerd/config.toml"), img.Ref); err != nil {
				return err
			}
		}
	}
	ctrd, err := startContainerd(ctx, b.work, filepath.Join(b.root, "var/lib/containerd"))
	if err != nil {
		return err
	}
	defer ctrd.stop()
	for _, img := range imgs {
		archive := filepath.Join(b.work, "image.tar")
		f, err := os.Create(archive)
		if err != nil {
			return err
		}
		err = WriteImage(f, b.work, img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := ctrd.importImage(ctx, archive); err != nil {
			return fmt.Errorf("%s: %w", img.Ref, err)
		}
		fmt.Fprintf(b.o.Progress, "node image:   preloaded %s\n", img.Ref)
		os.Remove(archive)
	}
	return nil
}

// commit imports the root filesystem as the node image, with kind's
// entrypoint and stop signal (docker import cannot set STOPSIGNAL, so a
// one-line build adds it: metadata only, no layer).
func (b *nodeBuilder) commit(ctx context.Context) error {
	tmpRef := b.ref + "-import"
	tarCmd := exec.CommandContext(ctx, "tar", "-C", b.root, "--numeric-owner", "-cf", "-", ".")
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	var tarErr bytes.Buffer
	tarCmd.Stderr = &tarErr
	if err := tarCmd.Start(); err != nil {
		return err
	}
	_, ierr := docker(ctx, pipe, "import",
		"--change", "ENV container=docker",
		"--change", `ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]`,
		"--change", "LABEL io.edgefault.kind-version="+KindVersion+" io.edgefault.kubernetes-version="+k8sbin.KubernetesVersion,
		"-", tmpRef)
	if err := tarCmd.Wait(); err != nil && ierr == nil {
		return fmt.Errorf("tar: %w: %s", err, tarErr.String())
	}
	if ierr != nil {
		return ierr
	}
	defer docker(context.WithoutCancel(ctx), nil, "rmi", tmpRef)
	_, err = docker(ctx, strings.NewReader("FROM "+tmpRef+"\nSTOPSIGNAL SIGRTMIN+3\n"), "build", "-q", "-t", b.ref, "-")
	return err
}

func imageSize(ctx context.Context, ref string) (int64, error) {
	out, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Size}}", ref)
	if err != nil {
		return 0, err
	}
	var n int64
	_, err = fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n, err
}

// buildPause compiles the embedded pause program, static.
func buildPause(ctx context.Context, work string) (string, error) {
	dir := filepath.Join(work, "pause")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), pauseSource, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "pause", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pause: %w: %s", err, out)
	}
	return filepath.Join(dir, "pause"), nil
}

func setSandboxImage(config, ref string) error {
	b, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "sandbox_image") {
			lines[i] = `  sandbox_image = "` + ref + `"`
			found = true
		}
	}
	if !found {
		return errors.New("kind's containerd config has no sandbox_image to point at the local pause image")
	}
	return os.WriteFile(config, []byte(strings.Join(lines, "\n")), 0o644)
}

// containerdProc is a containerd started against a root filesystem's
// store, on a socket of its own.
type containerdProc struct {
	cmd  *exec.Cmd
	sock string
}

func startContainerd(ctx context.Context, work, root string) (*containerdProc, error) {
	state := filepath.Join(work, "containerd-state")
	sock := filepath.Join(state, "containerd.sock")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	config := filepath.Join(work, "containerd.toml")
	// Only the content and metadata stores are needed: the node's own
	// containerd unpacks images when it first runs them.
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n", root, state, sock)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(work, "containerd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("containerd", "--config", config)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	log.Close()
	p := &containerdProc{cmd: cmd, sock: sock}
	for i := 0; i < 100; i++ {
		if err := run(ctx, nil, "ctr", "--address", sock, "version"); err == nil {
			return p, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("containerd did not start (see %s)", filepath.Join(work, "containerd.log"))
}

func (p *containerdProc) importImage(ctx context.Context, archive string) error {
	return run(ctx, nil, "ctr", "--address", p.sock, "-n", "k8s.io", "images", "import", "--no-unpack", "--all-platforms", archive)
}

func (p *containerdProc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// run runs a command; stdout goes to out (nil: dropped); its stderr's tail
// is in the error.
func run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		s := strings.TrimSpace(stderr.String())
		if len(s) > 2000 {
			s = "..." + s[len(s)-2000:]
		}
		return fmt.Errorf("%s: %w: %s", name, err, s)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies kind's base files: scripts executable, the rest 0644 (as
// its Dockerfile's COPY --chmod does).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(p, "/bin/") {
			mode = 0o755
		}
		return copyFile(p, target, mode)
	})
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
