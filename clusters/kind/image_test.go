package kind

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The archive is both an OCI layout and a docker-archive, and every digest
// in it is the digest of what it names.
func TestWriteImageDigestsAndBothIndexes(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	img := Image{Ref: "example.test/tool:v1", Layers: []Layer{FilesLayer(map[string]string{"/usr/local/bin/tool": bin})}, Entrypoint: []string{"/usr/local/bin/tool"}}
	if err := WriteImage(&buf, dir, img); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	for name, b := range files {
		if d, ok := bytes.CutPrefix([]byte(name), []byte("blobs/sha256/")); ok && len(d) > 0 {
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != string(d) {
				t.Errorf("%s holds content with another digest", name)
			}
		}
	}
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	if got := index.Manifests[0].Annotations["io.containerd.image.name"]; got != img.Ref {
		t.Errorf("containerd name %q, want %q", got, img.Ref)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil || len(docker) != 1 {
		t.Fatalf("manifest.json: %v", err)
	}
	if docker[0].RepoTags[0] != img.Ref || len(docker[0].Layers) != 1 {
		t.Fatalf("docker manifest %+v", docker[0])
	}
	var config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		Config struct{ Entrypoint []string }
	}
	if err := json.Unmarshal(files[docker[0].Config], &config); err != nil {
		t.Fatal(err)
	}
	if config.Config.Entrypoint[0] != "/usr/local/bin/tool" {
		t.Errorf("entrypoint %v", config.Config.Entrypoint)
	}
	// The diff ID is the uncompressed layer's digest, and the layer holds
	// the file where the image says.
	gz, err := gzip.NewReader(bytes.NewReader(files[docker[0].Layers[0]]))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(gz)
	sum := sha256.Sum256(raw)
	if "sha256:"+hex.EncodeToString(sum[:]) != config.RootFS.DiffIDs[0] {
		t.Error("diff ID is not the uncompressed layer's digest")
	}
	lt := tar.NewReader(bytes.NewReader(raw))
	found := false
	for {
		h, err := lt.Next()
		if err != nil {
			break
		}
		if h.Name == "usr/local/bin/tool" && h.Mode&0o111 != 0 {
			found = true
		}
	}
	if !found {
		t.Error("the layer lacks usr/local/bin/tool, executable")
	}
}

func TestSpecFiles(t *testing.T) {
	for _, c := range []struct {
		args          []string
		spec, process string
	}{
		{[]string{"--root", "/run/r", "--log", "/l", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p", "id"}, "/b/config.json", ""},
		{[]string{"--root=/run/r", "run", "-b", "/b2", "id"}, "/b2/config.json", ""},
		{[]string{"create", "id"}, "config.json", ""},
		{[]string{"--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"}, "", "/tmp/p.json"},
		{[]string{"--root", "/r", "start", "id"}, "", ""},
		{[]string{"--root", "/r", "delete", "--force", "id"}, "", ""},
	} {
		spec, process := specFiles(c.args)
		if spec != c.spec || process != c.process {
			t.Errorf("%v: spec %q process %q, want %q %q", c.args, spec, process, c.spec, c.process)
		}
	}
}

func TestDropCapability(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	in := `{"ociVersion":"1.0.2","process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"],"permitted":["CAP_NET_ADMIN","CAP_SYS_RESOURCE"]}},"root":{"path":"rootfs"}}`
	if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dropCapability(p, "process", "capabilities"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if bytes.Contains(b, []byte("CAP_SYS_RESOURCE")) || !bytes.Contains(b, []byte("CAP_NET_ADMIN")) || !bytes.Contains(b, []byte(`"rootfs"`)) {
		t.Fatalf("after: %s", b)
	}
}

func TestFullRef(t *testing.T) {
	for ref, want := range map[string]string{
		"edgefault/edgeguard:abc":        "docker.io/edgefault/edgeguard:abc",
		"pause:3.10":                     "docker.io/library/pause:3.10",
		"registry.k8s.io/pause:3.10.2":   "registry.k8s.io/pause:3.10.2",
		"localhost/edgefault/x:1":        "localhost/edgefault/x:1",
		"127.0.0.1:5000/x:1":             "127.0.0.1:5000/x:1",
		"docker.io/kindest/node:v1.37.2": "docker.io/kindest/node:v1.37.2",
	} {
		if got := fullRef(ref); got != want {
			t.Errorf("fullRef(%q) = %q, want %q", ref, got, want)
		}
	}
}
