// Package k8sbin builds the pinned Kubernetes control-plane binaries (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) and kwok from
// the Go module proxy into a cache directory, and finds them there; and,
// asked for group "kind", what a kind node image is made of (kubelet,
// kubeadm, kubectl, kube-proxy, coredns, crictl, flanneld). No
// binary is downloaded prebuilt and none is committed: `edgefault setup`
// builds them once (minutes, cold), later runs reuse the cache, and a
// changed pin rebuilds only what changed.
package k8sbin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Pinned versions (each builds from the Go module proxy).
const (
	KubernetesVersion = "v1.37.2"
	StagingVersion    = "v0.37.2"
	EtcdVersion       = "v3.7.0"
	KwokVersion       = "v0.7.0"
	// CorednsVersion is the one kubeadm deploys for KubernetesVersion.
	CorednsVersion = "v1.14.6"
	CrictlVersion  = "v1.37.0"
	// FlannelVersion is the kind nodes' CNI (kindnetd, kind's own, cannot
	// be fetched offline).
	FlannelVersion = "v0.28.10"
)

// GroupKind names the components a kind node image needs beyond the
// control plane; Setup builds them only when asked (Options.Groups).
const GroupKind = "kind"

// Component is one binary to build.
type Component struct {
	Name    string
	Version string
	// Group is "" for what every run needs (the default), or GroupKind.
	Group string
	// Estimate is how long a cold build took on 2 cores (measured), for
	// progress messages.
	Estimate time.Duration
	// VersionArgs prints the version; VersionWant must appear in it.
	VersionArgs []string
	VersionWant string
	build       func(ctx context.Context, b *builder, out string) error
}

// Components lists what Setup builds, in order.
func Components() []Component {
	k8s := func(name string, est time.Duration) Component {
		return Component{Name: name, Version: KubernetesVersion, Estimate: est,
			VersionArgs: []string{"--version"}, VersionWant: KubernetesVersion,
			build: func(ctx context.Context, b *builder, out string) error {
				return b.buildKubernetes(ctx, "k8s.io/kubernetes/cmd/"+name, "", out)
			}}
	}
	node := func(c Component, args ...string) Component {
		c.Group = GroupKind
		c.build = func(ctx context.Context, b *builder, out string) error {
			return b.buildKubernetes(ctx, "k8s.io/kubernetes/cmd/"+c.Name, GroupKind, out)
		}
		if len(args) > 0 {
			c.VersionArgs = args
		}
		return c
	}
	install := func(name, modVersion, version, want string, est time.Duration, args ...string) Component {
		return Component{Name: name, Version: version, Estimate: est, Group: GroupKind,
			VersionArgs: args, VersionWant: want,
			build: func(ctx context.Context, b *builder, out string) error {
				return b.goInstall(ctx, modVersion, out)
			}}
	}
	return []Component{
		{Name: "etcd", Version: EtcdVersion, Estimate: 35 * time.Second,
			VersionArgs: []string{"--version"}, VersionWant: strings.TrimPrefix(EtcdVersion, "v"),
			build: func(ctx context.Context, b *builder, out string) error {
				return b.buildEtcd(ctx, out)
			}},
		k8s("kube-apiserver", 270*time.Second),
		k8s("kube-controller-manager", 120*time.Second),
		k8s("kube-scheduler", 60*time.Second),
		{Name: "kwok", Version: KwokVersion, Estimate: 80 * time.Second,
			VersionArgs: []string{"--version"}, VersionWant: "",
			build: func(ctx context.Context, b *builder, out string) error {
				return b.goInstall(ctx, "sigs.k8s.io/kwok/cmd/kwok@"+KwokVersion, out)
			}},
		// A kind node: estimates measured warm on the control plane's
		// build cache (cold: minutes each).
		node(k8s("kubelet", 40*time.Second)),
		node(k8s("kubeadm", 35*time.Second), "version", "-o", "short"),
		node(k8s("kubectl", 25*time.Second), "version", "--client"),
		node(k8s("kube-proxy", 25*time.Second)),
		install("coredns", "github.com/coredns/coredns@"+CorednsVersion, CorednsVersion, strings.TrimPrefix(CorednsVersion, "v"), 190*time.Second, "-version"),
		// go install leaves crictl's version unstamped ("unknown"): the
		// module version pins it.
		install("crictl", "sigs.k8s.io/cri-tools/cmd/crictl@"+CrictlVersion, CrictlVersion, "", 50*time.Second, "--version"),
		{Name: "flanneld", Version: FlannelVersion, Estimate: 60 * time.Second, Group: GroupKind,
			VersionArgs: []string{"--version"}, VersionWant: FlannelVersion,
			build: func(ctx context.Context, b *builder, out string) error {
				return b.buildFlannel(ctx, out)
			}},
	}
}

// Selected is what Setup builds for o: the components named by o.Only,
// else the default group and the groups in o.Groups.
func Selected(o Options) []Component {
	only := map[string]bool{}
	for _, n := range o.Only {
		only[n] = true
	}
	var out []Component
	for _, c := range Components() {
		switch {
		case len(only) > 0:
			if !only[c.Name] {
				continue
			}
		case c.Group != "" && !slices.Contains(o.Groups, c.Group):
			continue
		}
		out = append(out, c)
	}
	return out
}

// names lists the components' names.
func names() string {
	var n []string
	for _, c := range Components() {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

// DefaultDir is the cache: $EDGEFAULT_CACHE_DIR, else
// $XDG_CACHE_HOME/edgefault, else ~/.cache/edgefault.
func DefaultDir() string {
	if d := os.Getenv("EDGEFAULT_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "edgefault")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "edgefault")
	}
	return filepath.Join(os.TempDir(), "edgefault-cache")
}

// Cache is a directory of built binaries.
type Cache struct{ Dir string }

// Path is where the binary name lives in the cache.
func (c Cache) Path(name string) string { return filepath.Join(c.Dir, "bin", name) }

// manifest records what a cached binary is.
type manifest struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Built   time.Time `json:"built"`
	Took    string    `json:"took"`
}

func (c Cache) manifestPath(name string) string { return c.Path(name) + ".json" }

// BuildTime is how long the cached binary took to build, as recorded then
// ("" if unknown).
func (c Cache) BuildTime(name string) string {
	b, err := os.ReadFile(c.manifestPath(name))
	if err != nil {
		return ""
	}
	var m manifest
	_ = json.Unmarshal(b, &m)
	return m.Took
}

// Lookup returns the path of a cached binary built at the pinned version,
// or an error that says to run `edgefault setup`.
func (c Cache) Lookup(name string) (string, error) {
	for _, comp := range Components() {
		if comp.Name == name {
			if ok, why := c.fresh(comp); !ok {
				cmd := "edgefault setup"
				if comp.Group == GroupKind {
					cmd += " --kind"
				}
				return "", fmt.Errorf("%s %s is not built (%s): run `%s` (cache %s)", name, comp.Version, why, cmd, c.Dir)
			}
			return c.Path(name), nil
		}
	}
	return "", fmt.Errorf("unknown component %q", name)
}

// Digest is the SHA-256 the cache recorded for a built binary ("" if
// none): what an image made from it is keyed by.
func (c Cache) Digest(name string) string {
	b, err := os.ReadFile(c.manifestPath(name))
	if err != nil {
		return ""
	}
	var m manifest
	_ = json.Unmarshal(b, &m)
	return m.SHA256
}

// fresh reports whether comp is cached at its pinned version, unchanged.
func (c Cache) fresh(comp Component) (bool, string) {
	b, err := os.ReadFile(c.manifestPath(comp.Name))
	if err != nil {
		return false, "not in the cache"
	}
	var m manifest
	if json.Unmarshal(b, &m) != nil {
		return false, "manifest unreadable"
	}
	if m.Version != comp.Version {
		return false, fmt.Sprintf("cached %s, pinned %s", m.Version, comp.Version)
	}
	sum, err := fileSHA256(c.Path(comp.Name))
	if err != nil || sum != m.SHA256 {
		return false, "binary missing or changed"
	}
	return true, ""
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Options configures Setup.
type Options struct {
	// Only builds these components (default: the default group, and
	// Groups).
	Only []string
	// Groups adds these groups to the default one (GroupKind).
	Groups []string
	// Force rebuilds even what is cached.
	Force bool
	// Progress receives one line per step and a heartbeat while a build
	// runs.
	Progress io.Writer
}

// Result says what Setup did for one component.
type Result struct {
	Name, Version, Path string
	Built               bool
	Took                time.Duration
	VersionOutput       string
}

// Setup builds whatever is missing or stale, verifies every binary by
// running it with its version flag, and returns what it did.
func (c Cache) Setup(ctx context.Context, o Options) ([]Result, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the Go toolchain is not on PATH (needed to build the control plane from the Go module proxy): install Go 1.26 or put /usr/local/go/bin on PATH")
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "bin"), 0o755); err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", c.Dir, err)
	}
	b := &builder{goBin: goBin, dir: filepath.Join(c.Dir, "build"), progress: o.Progress}
	want := map[string]bool{}
	for _, n := range o.Only {
		want[n] = true
	}
	for _, g := range o.Groups {
		if g != GroupKind {
			return nil, fmt.Errorf("unknown group %q: the only one is %q", g, GroupKind)
		}
	}
	var out []Result
	for _, comp := range Selected(o) {
		delete(want, comp.Name)
		r := Result{Name: comp.Name, Version: comp.Version, Path: c.Path(comp.Name)}
		if ok, why := c.fresh(comp); ok && !o.Force {
			fmt.Fprintf(o.Progress, "%-24s %s cached\n", comp.Name, comp.Version)
		} else {
			if o.Force {
				why = "--force"
			}
			fmt.Fprintf(o.Progress, "%-24s %s building (%s; about %v cold on 2 cores)\n", comp.Name, comp.Version, why, comp.Estimate)
			start := time.Now()
			tmp := c.Path(comp.Name) + ".new"
			stop := heartbeat(o.Progress, comp.Name, start)
			err := comp.build(ctx, b, tmp)
			stop()
			if err != nil {
				os.Remove(tmp)
				return out, fmt.Errorf("build %s %s: %w", comp.Name, comp.Version, err)
			}
			if err := os.Rename(tmp, c.Path(comp.Name)); err != nil {
				return out, err
			}
			sum, err := fileSHA256(c.Path(comp.Name))
			if err != nil {
				return out, err
			}
			r.Built, r.Took = true, time.Since(start)
			mb, _ := json.MarshalIndent(manifest{Name: comp.Name, Version: comp.Version, SHA256: sum, Built: time.Now().UTC(), Took: r.Took.Round(time.Second).String()}, "", "  ")
			if err := os.WriteFile(c.manifestPath(comp.Name), mb, 0o644); err != nil {
				return out, err
			}
			fmt.Fprintf(o.Progress, "%-24s %s built in %v\n", comp.Name, comp.Version, r.Took.Round(time.Second))
		}
		v, err := verify(ctx, c.Path(comp.Name), comp)
		if err != nil {
			return out, err
		}
		r.VersionOutput = v
		out = append(out, r)
	}
	for n := range want {
		return out, fmt.Errorf("unknown component %q: choose from %s", n, names())
	}
	return out, nil
}

func heartbeat(w io.Writer, name string, start time.Time) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%-24s still building (%v)\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// verify runs the binary's version flag and checks what it says.
func verify(ctx context.Context, path string, comp Component) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, comp.VersionArgs...).CombinedOutput()
	first := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if err != nil {
		return "", fmt.Errorf("verify %s: `%s %s` failed: %v: %s", comp.Name, path, strings.Join(comp.VersionArgs, " "), err, first)
	}
	if comp.VersionWant != "" && !strings.Contains(string(out), comp.VersionWant) {
		return "", fmt.Errorf("verify %s: it reports %q, want %s (rebuild with `edgefault setup --force`)", comp.Name, first, comp.VersionWant)
	}
	return first, nil
}

// builder runs the go command in scratch modules under dir.
type builder struct {
	goBin    string
	dir      string
	progress io.Writer
}

var proxyErrRE = regexp.MustCompile(`(?i)(dial tcp|no such host|connection refused|proxyconnect|403 Forbidden|404 Not Found|410 Gone|timeout|i/o timeout|TLS handshake)`)

// run runs the go command in dir and explains failures.
func (b *builder) run(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, b.goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOTOOLCHAIN=local"), env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		msg := tail(stderr.String(), 8)
		if proxyErrRE.MatchString(msg) {
			proxy := os.Getenv("GOPROXY")
			if proxy == "" {
				proxy = "the default GOPROXY"
			}
			return fmt.Errorf("the Go module proxy (%s) could not serve what `go %s` needs: %s", proxy, strings.Join(args, " "), msg)
		}
		return fmt.Errorf("`go %s` in %s: %v\n%s", strings.Join(args, " "), dir, err, msg)
	}
	return nil
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// scratch creates (or reuses) a scratch module directory with go.mod and a
// tools.go that imports pkgs, so `go mod tidy` resolves their deps.
func (b *builder) scratch(name, gomod string, pkgs []string) (string, error) {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var tools strings.Builder
	tools.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
	for _, p := range pkgs {
		fmt.Fprintf(&tools, "\t_ %q\n", p)
	}
	tools.WriteString(")\n")
	if old, _ := os.ReadFile(filepath.Join(dir, "tools.go")); string(old) != tools.String() {
		// Other packages to resolve: go.sum is tidied again.
		_ = os.Remove(filepath.Join(dir, "go.sum"))
	}
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools.String()), 0o644); err != nil {
		return "", err
	}
	// go mod tidy rewrites go.mod, so the pin is kept beside it to tell
	// whether the module is still the one asked for.
	pin := filepath.Join(dir, "go.mod.pin")
	old, _ := os.ReadFile(pin)
	if string(old) != gomod {
		// A new pin: start over, so go.sum holds only what it needs.
		_ = os.Remove(filepath.Join(dir, "go.sum"))
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			return "", err
		}
		if err := os.WriteFile(pin, []byte(gomod), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// stagingModules reads k8s.io/kubernetes's own go.mod (from the module
// proxy) and returns the staging modules it replaces with ./staging paths.
func (b *builder) stagingModules(ctx context.Context) ([]string, error) {
	tmp, err := os.MkdirTemp("", "k8sbin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, b.goBin, "mod", "download", "-json", "k8s.io/kubernetes@"+KubernetesVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		msg := err.Error()
		if errors.As(err, &ee) {
			msg = string(ee.Stderr)
		}
		return nil, fmt.Errorf("the Go module proxy could not serve k8s.io/kubernetes@%s: %s", KubernetesVersion, tail(msg+string(out), 5))
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil || info.GoMod == "" {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes: unexpected answer: %s", tail(string(out), 5))
	}
	return parseStaging(info.GoMod)
}

var stagingRE = regexp.MustCompile(`^\s*(k8s\.io/[A-Za-z0-9._/-]+)\s+=>\s+\./staging/`)

func parseStaging(gomodPath string) ([]string, error) {
	f, err := os.Open(gomodPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := stagingRE.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("k8s.io/kubernetes go.mod lists no staging modules: the build trick needs updating")
	}
	return mods, sc.Err()
}

// kubernetesGoMod is the scratch module that builds Kubernetes commands:
// k8s.io/kubernetes refuses `go install` because its go.mod points its
// staging modules at ./staging; replacing each with its published version
// makes it buildable.
func kubernetesGoMod(staging []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "module edgefault.local/k8sbuild\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, StagingVersion)
	}
	b.WriteString(")\n")
	return b.String()
}

// buildKubernetes builds one command of k8s.io/kubernetes in the scratch
// module of its group: the control plane's resolves only what the control
// plane needs, so a run that never makes a kind node image never fetches
// the kubelet's dependencies. Both share the Go build cache.
func (b *builder) buildKubernetes(ctx context.Context, pkg, group, out string) error {
	staging, err := b.stagingModules(ctx)
	if err != nil {
		return err
	}
	var pkgs []string
	for _, c := range Components() {
		if c.Version == KubernetesVersion && (c.Group == "" || c.Group == group) {
			pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+c.Name)
		}
	}
	name := "kubernetes-" + KubernetesVersion
	if group != "" {
		name += "-" + group
	}
	dir, err := b.scratch(name, kubernetesGoMod(staging), pkgs)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
		fmt.Fprintf(b.progress, "%-24s resolving k8s.io/kubernetes %s dependencies\n", "", KubernetesVersion)
		if err := b.run(ctx, dir, nil, "mod", "tidy"); err != nil {
			return err
		}
	}
	// The version the binaries report (normally stamped by the release
	// scripts from git).
	major, minor := "1", strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
	ld := fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=%s -X k8s.io/component-base/version.gitMajor=%s -X k8s.io/component-base/version.gitMinor=%s -X k8s.io/component-base/version.gitTreeState=clean",
		KubernetesVersion, major, minor)
	return b.run(ctx, dir, nil, "build", "-trimpath", "-ldflags", ld, "-o", out, pkg)
}

func (b *builder) buildEtcd(ctx context.Context, out string) error {
	gomod := fmt.Sprintf("module edgefault.local/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n", EtcdVersion)
	dir, err := b.scratch("etcd-"+EtcdVersion, gomod, []string{"go.etcd.io/etcd/server/v3"})
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
		if err := b.run(ctx, dir, nil, "mod", "tidy"); err != nil {
			return err
		}
	}
	return b.run(ctx, dir, nil, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "go.etcd.io/etcd/server/v3")
}

// flannelDropped are the backends flanneld's main imports that cannot be
// built here: tencentvpc's SDK is not on the Go module proxy and udp needs
// cgo. The kind nodes use host-gw.
var flannelDropped = []string{"pkg/backend/tencentvpc", "pkg/backend/udp"}

// buildFlannel builds flanneld from its module, minus flannelDropped: the
// module's source is copied out of the module cache and those imports
// removed from its main package.
func (b *builder) buildFlannel(ctx context.Context, out string) error {
	const mod = "github.com/flannel-io/flannel"
	var dl bytes.Buffer
	cmd := exec.CommandContext(ctx, b.goBin, "mod", "download", "-json", mod+"@"+FlannelVersion)
	cmd.Dir = b.dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	cmd.Stdout = &dl
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the Go module proxy could not serve %s@%s: %w\n%s", mod, FlannelVersion, err, tail(dl.String(), 8))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(dl.Bytes(), &info); err != nil || info.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: %s %v", mod, FlannelVersion, info.Error, err)
	}
	src := filepath.Join(b.dir, "flannel-"+FlannelVersion)
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	// Writable (the module cache is not), to drop the imports.
	if err := os.CopyFS(src, os.DirFS(info.Dir)); err != nil {
		return fmt.Errorf("copy %s: %w", info.Dir, err)
	}
	mainGo := filepath.Join(src, "main.go")
	m, err := os.ReadFile(mainGo)
	if err != nil {
		return err
	}
	for _, pkg := range flannelDropped {
		imp := fmt.Sprintf("\t_ %q\n", mod+"/"+pkg)
		if !bytes.Contains(m, []byte(imp)) {
			return fmt.Errorf("flannel %s's main.go no longer imports %s: update flannelDropped", FlannelVersion, pkg)
		}
		m = bytes.Replace(m, []byte(imp), nil, 1)
		if err := os.RemoveAll(filepath.Join(src, pkg)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(mainGo, m, 0o644); err != nil {
		return err
	}
	ld := "-s -w -X " + mod + "/pkg/version.Version=" + FlannelVersion
	return b.run(ctx, src, nil, "build", "-trimpath", "-ldflags", ld, "-o", out, ".")
}

// goInstall builds module@version with `go install` into a private GOBIN
// and moves the binary to out.
func (b *builder) goInstall(ctx context.Context, modVersion, out string) error {
	gobin := filepath.Join(b.dir, "gobin")
	if err := os.MkdirAll(gobin, 0o755); err != nil {
		return err
	}
	if err := b.run(ctx, b.dir, []string{"GOBIN=" + gobin, "GOFLAGS="}, "install", "-trimpath", "-ldflags", "-s -w", modVersion); err != nil {
		return err
	}
	name := filepath.Base(strings.SplitN(modVersion, "@", 2)[0])
	return os.Rename(filepath.Join(gobin, name), out)
}
