package k8sbin

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStagingAndGoMod(t *testing.T) {
	gm := filepath.Join(t.TempDir(), "go.mod")
	if err := os.WriteFile(gm, []byte(`module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	github.com/foo/bar => github.com/foo/bar v1.2.3
)
`), 0o644); err != nil {
		t.Fatal(err)
	}
	mods, err := parseStaging(gm)
	if err != nil || len(mods) != 2 || mods[0] != "k8s.io/api" || mods[1] != "k8s.io/apimachinery" {
		t.Fatalf("parseStaging = %v, %v", mods, err)
	}
	out := kubernetesGoMod(mods)
	for _, want := range []string{"require k8s.io/kubernetes " + KubernetesVersion, "k8s.io/api => k8s.io/api " + StagingVersion, "k8s.io/apimachinery => k8s.io/apimachinery " + StagingVersion} {
		if !strings.Contains(out, want) {
			t.Errorf("go.mod lacks %q:\n%s", want, out)
		}
	}
	empty := filepath.Join(t.TempDir(), "go.mod")
	os.WriteFile(empty, []byte("module x\n"), 0o644)
	if _, err := parseStaging(empty); err == nil {
		t.Error("a go.mod without staging replaces was accepted")
	}
}

// A cached binary counts only at its pinned version and unchanged; a
// changed pin or a modified binary means rebuild.
func TestCacheFreshness(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	comp := Components()[0]
	if _, err := c.Lookup(comp.Name); err == nil || !strings.Contains(err.Error(), "run `edgefault setup`") {
		t.Fatalf("empty cache: %v", err)
	}
	os.MkdirAll(filepath.Join(c.Dir, "bin"), 0o755)
	os.WriteFile(c.Path(comp.Name), []byte("#!/bin/sh\necho etcd Version: 3.7.0\n"), 0o755)
	sum, _ := fileSHA256(c.Path(comp.Name))
	write := func(version string) {
		b, _ := json.Marshal(manifest{Name: comp.Name, Version: version, SHA256: sum})
		os.WriteFile(c.manifestPath(comp.Name), b, 0o644)
	}
	write(comp.Version)
	if p, err := c.Lookup(comp.Name); err != nil || p != c.Path(comp.Name) {
		t.Fatalf("fresh binary: %q, %v", p, err)
	}
	write("v0.0.1")
	if _, err := c.Lookup(comp.Name); err == nil || !strings.Contains(err.Error(), "cached v0.0.1, pinned") {
		t.Fatalf("stale pin: %v", err)
	}
	write(comp.Version)
	os.WriteFile(c.Path(comp.Name), []byte("#!/bin/sh\necho tampered\n"), 0o755)
	if _, err := c.Lookup(comp.Name); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("changed binary: %v", err)
	}
}

func TestVerifyChecksTheReportedVersion(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kube-apiserver")
	os.WriteFile(p, []byte("#!/bin/sh\necho Kubernetes v0.0.0-master\n"), 0o755)
	comp := Components()[1]
	if _, err := verify(context.Background(), p, comp); err == nil || !strings.Contains(err.Error(), "want "+KubernetesVersion) {
		t.Fatalf("wrong version accepted: %v", err)
	}
	os.WriteFile(p, []byte("#!/bin/sh\necho Kubernetes "+KubernetesVersion+"\n"), 0o755)
	if v, err := verify(context.Background(), p, comp); err != nil || v != "Kubernetes "+KubernetesVersion {
		t.Fatalf("verify = %q, %v", v, err)
	}
}

func TestSetupWithoutGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Cache{Dir: t.TempDir()}.Setup(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "Go toolchain") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownComponent(t *testing.T) {
	_, err := Cache{Dir: t.TempDir()}.Setup(context.Background(), Options{Only: []string{"kubelet-ish"}})
	if err == nil || !strings.Contains(err.Error(), `unknown component "kubelet-ish"`) {
		t.Fatalf("err = %v", err)
	}
}

// With the module proxy unreachable the error names it. The proxy here is
// a loopback port nothing listens on, and the checksum database is off,
// so the go command contacts nothing else.
func TestSetupWithoutTheModuleProxy(t *testing.T) {
	t.Setenv("GOPROXY", "http://127.0.0.1:9")
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GOMODCACHE", t.TempDir())
	_, err := Cache{Dir: t.TempDir()}.Setup(context.Background(), Options{Only: []string{"etcd"}})
	if err == nil || !strings.Contains(err.Error(), "Go module proxy (http://127.0.0.1:9) could not serve") {
		t.Fatalf("err = %v", err)
	}
}

// A run needs the control plane only: the kind node's binaries are built
// when asked for, by group or by name.
func TestSelectedGroups(t *testing.T) {
	names := func(cs []Component) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return strings.Join(n, ",")
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kwok"},
		{Options{Groups: []string{GroupKind}}, "etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kwok,kubelet,kubeadm,kubectl,kube-proxy,coredns,crictl,flanneld"},
		{Options{Only: []string{"kubelet", "etcd"}}, "etcd,kubelet"},
	} {
		if got := names(Selected(tc.o)); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.o, got, tc.want)
		}
	}
	if _, err := (Cache{Dir: t.TempDir()}).Setup(context.Background(), Options{Groups: []string{"kwok"}}); err == nil || !strings.Contains(err.Error(), `unknown group "kwok"`) {
		t.Errorf("unknown group: %v", err)
	}
}

// Another set of packages in a scratch module means its go.sum is tidied
// again; the same set keeps it.
func TestScratchRetidiesWhenThePackagesChange(t *testing.T) {
	b := &builder{dir: t.TempDir()}
	dir, err := b.scratch("m", "module m\n", []string{"a/b"})
	if err != nil {
		t.Fatal(err)
	}
	sum := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(sum, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.scratch("m", "module m\n", []string{"a/b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sum); err != nil {
		t.Fatalf("the same packages dropped go.sum: %v", err)
	}
	if _, err := b.scratch("m", "module m\n", []string{"a/b", "c/d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sum); !os.IsNotExist(err) {
		t.Fatalf("other packages kept go.sum: %v", err)
	}
}
