package kind

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Image is a container image to write as an archive: layers stacked in
// order, and how to run it.
type Image struct {
	// Ref is its name with a tag ("registry.k8s.io/pause:3.10.2").
	Ref        string
	Layers     []Layer
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	Labels     map[string]string
}

// Layer writes one layer: an uncompressed tar stream.
type Layer func(w io.Writer) error

// imageEpoch is every image's creation time and its files' mtime, so the
// same inputs make the same digests.
var imageEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// FilesLayer is a layer of files from this machine: dest (absolute, in the
// image) → source path. Parent directories are made; modes are kept.
func FilesLayer(files map[string]string) Layer {
	return func(w io.Writer) error {
		tw := tar.NewWriter(w)
		dirs := map[string]bool{}
		for _, dest := range sortedKeys(files) {
			rel := strings.TrimPrefix(path.Clean(dest), "/")
			for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
				dirs[d] = true
			}
		}
		for _, d := range sortedKeys(dirs) {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: imageEpoch}); err != nil {
				return err
			}
		}
		for _, dest := range sortedKeys(files) {
			if err := addFile(tw, strings.TrimPrefix(path.Clean(dest), "/"), files[dest]); err != nil {
				return err
			}
		}
		return tw.Close()
	}
}

func addFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: imageEpoch}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// TarLayer is a layer read from an existing tar file (a root filesystem).
func TarLayer(file string) Layer {
	return func(w io.Writer) error {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
}

// WriteImage writes img to w as one archive that is both an OCI image
// layout (index.json, which containerd's import reads, naming the image
// by its io.containerd.image.name annotation) and a docker-archive
// (manifest.json, which docker load reads). Layers are gzipped; tmp is a
// directory for them while their digests are computed.
func WriteImage(w io.Writer, tmp string, img Image) error {
	type blob struct {
		digest string
		size   int64
		file   string
	}
	var layers []blob
	var diffIDs []string
	for i, l := range img.Layers {
		f, err := os.CreateTemp(tmp, "layer-*.tar.gz")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		gzSum, rawSum := sha256.New(), sha256.New()
		gz, _ := gzip.NewWriterLevel(io.MultiWriter(f, gzSum), gzip.BestSpeed)
		if err := l(io.MultiWriter(gz, rawSum)); err != nil {
			f.Close()
			return fmt.Errorf("%s: layer %d: %w", img.Ref, i, err)
		}
		if err := gz.Close(); err != nil {
			f.Close()
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		layers = append(layers, blob{digest: "sha256:" + hex.EncodeToString(gzSum.Sum(nil)), size: fi.Size(), file: f.Name()})
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(rawSum.Sum(nil)))
	}
	env := img.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      imageEpoch.Format(time.RFC3339),
		"config": map[string]any{
			"Env": env, "Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "User": img.User, "Labels": img.Labels,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return err
	}
	cfg := blobOf(config)
	descs := make([]map[string]any, len(layers))
	for i, l := range layers {
		descs[i] = map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.size}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest, "size": cfg.size},
		"layers":        descs,
	})
	if err != nil {
		return err
	}
	man := blobOf(manifest)
	tag := img.Ref[strings.LastIndex(img.Ref, ":")+1:]
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man.digest, "size": man.size,
			"annotations": map[string]string{"io.containerd.image.name": fullRef(img.Ref), "org.opencontainers.image.ref.name": tag},
		}},
	})
	if err != nil {
		return err
	}
	layerPaths := make([]string, len(layers))
	for i, l := range layers {
		layerPaths[i] = blobPath(l.digest)
	}
	dockerManifest, err := json.Marshal([]any{map[string]any{"Config": blobPath(cfg.digest), "RepoTags": []string{img.Ref}, "Layers": layerPaths}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: imageEpoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755, ModTime: imageEpoch}); err != nil {
		return err
	}
	for _, l := range layers {
		if err := addFile(tw, blobPath(l.digest), l.file); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{blobPath(cfg.digest), config},
		{blobPath(man.digest), manifest},
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
	} {
		if err := put(f.name, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

type digested struct {
	digest string
	size   int64
}

func blobOf(b []byte) digested {
	s := sha256.Sum256(b)
	return digested{"sha256:" + hex.EncodeToString(s[:]), int64(len(b))}
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fullRef is ref as containerd names it: a kubelet asking for
// "edgefault/edgeguard:x" looks up "docker.io/edgefault/edgeguard:x", and
// containerd's import takes the annotation as written.
func fullRef(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	switch {
	case !found:
		return "docker.io/library/" + ref
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return ref
	}
	return "docker.io/" + ref
}
