package kind

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The config kind is given decodes as kind's v1alpha4 Cluster with the
// nodes, labels and pod network asked for.
func TestClusterConfig(t *testing.T) {
	for _, c := range []struct {
		name          string
		spec          ClusterSpec
		nodes         int
		labelledNodes int
	}{
		{"control plane only", ClusterSpec{Name: "a", Labels: map[string]string{"edgefault.io/site": "x"}}, 1, 1},
		{"two workers", ClusterSpec{Name: "b", Workers: 2, Labels: map[string]string{"edgefault.io/site": "x", "edgefault.io/role": "node"}}, 3, 2},
		{"no labels", ClusterSpec{Name: "c", Workers: 1}, 2, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := clusterConfig(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Kind       string
				APIVersion string `yaml:"apiVersion"`
				Networking struct {
					DisableDefaultCNI bool   `yaml:"disableDefaultCNI"`
					PodSubnet         string `yaml:"podSubnet"`
				}
				Nodes []struct {
					Role   string
					Labels map[string]string
				}
			}
			if err := yaml.Unmarshal(b, &cfg); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" || !cfg.Networking.DisableDefaultCNI || cfg.Networking.PodSubnet != PodSubnet {
				t.Fatalf("config:\n%s", b)
			}
			if len(cfg.Nodes) != c.nodes || cfg.Nodes[0].Role != "control-plane" {
				t.Fatalf("nodes %+v", cfg.Nodes)
			}
			labelled := 0
			for _, n := range cfg.Nodes {
				if len(n.Labels) == len(c.spec.Labels) && len(n.Labels) > 0 {
					for k, v := range c.spec.Labels {
						if n.Labels[k] != v {
							t.Fatalf("node %+v lacks %s=%s", n, k, v)
						}
					}
					labelled++
				}
			}
			if labelled != c.labelledNodes {
				t.Fatalf("%d labelled nodes, want %d:\n%s", labelled, c.labelledNodes, b)
			}
		})
	}
}

func TestKindVersionMatchesGoMod(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "sigs.k8s.io/kind" {
			if f[1] != KindVersion {
				t.Fatalf("KindVersion %s, but go.mod requires sigs.k8s.io/kind %s: the node image's base files would not match the library", KindVersion, f[1])
			}
			return
		}
	}
	t.Fatal("go.mod does not require sigs.k8s.io/kind")
}

// Named workers: each Node object is registered under its member's name,
// with its own labels; a name that is not a DNS label is refused.
func TestClusterConfigNamedNodes(t *testing.T) {
	b, err := clusterConfig(ClusterSpec{Name: "retail-store-1", Nodes: []NodeSpec{
		{Name: "store-1-pos", Labels: map[string]string{"edgefault.io/role": "node"}},
		{Name: "store-1-office"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Nodes []struct {
			Role                 string
			Labels               map[string]string
			KubeadmConfigPatches []string `yaml:"kubeadmConfigPatches"`
		}
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(cfg.Nodes) != 3 {
		t.Fatalf("nodes %+v", cfg.Nodes)
	}
	for i, want := range []string{"store-1-pos", "store-1-office"} {
		n := cfg.Nodes[i+1]
		if n.Role != "worker" || len(n.KubeadmConfigPatches) != 1 {
			t.Fatalf("node %d: %+v", i+1, n)
		}
		var patch struct {
			Kind             string
			NodeRegistration struct{ Name string } `yaml:"nodeRegistration"`
		}
		if err := yaml.Unmarshal([]byte(n.KubeadmConfigPatches[0]), &patch); err != nil {
			t.Fatal(err)
		}
		if patch.Kind != "JoinConfiguration" || patch.NodeRegistration.Name != want {
			t.Errorf("node %d patch %+v, want JoinConfiguration named %s", i+1, patch, want)
		}
	}
	if cfg.Nodes[1].Labels["edgefault.io/role"] != "node" || len(cfg.Nodes[2].Labels) != 0 {
		t.Errorf("labels %v %v", cfg.Nodes[1].Labels, cfg.Nodes[2].Labels)
	}
	for _, bad := range []string{"Store", "a_b", "-a", "a\n  x: y"} {
		if _, err := clusterConfig(ClusterSpec{Name: "x", Nodes: []NodeSpec{{Name: bad}}}); err == nil {
			t.Errorf("node name %q accepted", bad)
		}
	}
}

// Mounts reach every node at the same path; a path that is not plain is
// refused before it reaches kind's config.
func TestClusterConfigMounts(t *testing.T) {
	b, err := clusterConfig(ClusterSpec{Name: "m", Nodes: []NodeSpec{{Name: "n1"}}, Mounts: []string{"/run/edgefault/kind-fleets/f"}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Nodes []struct {
			ExtraMounts []struct {
				HostPath      string `yaml:"hostPath"`
				ContainerPath string `yaml:"containerPath"`
			} `yaml:"extraMounts"`
		}
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for i, n := range cfg.Nodes {
		if len(n.ExtraMounts) != 1 || n.ExtraMounts[0].HostPath != "/run/edgefault/kind-fleets/f" || n.ExtraMounts[0].ContainerPath != n.ExtraMounts[0].HostPath {
			t.Errorf("node %d mounts %+v\n%s", i, n.ExtraMounts, b)
		}
	}
	for _, bad := range []string{"relative", "/a/../etc", "/a b", "/a\n  x: y"} {
		if _, err := clusterConfig(ClusterSpec{Name: "m", Workers: 1, Mounts: []string{bad}}); err == nil {
			t.Errorf("mount %q accepted", bad)
		}
	}
}

// The flannel manifest renders to valid objects with the pod subnet and
// the preloaded image, and its CNI-config script turns flannel's
// subnet.env into a bridge/host-local config for the node's network
// (host bits cleared, as host-local requires).
func TestFlannelManifest(t *testing.T) {
	m, err := flannelManifest("10.244.0.0/16", "site-control-plane")
	if err != nil {
		t.Fatal(err)
	}
	var (
		kinds  []string
		script string
		images []string
	)
	dec := yaml.NewDecoder(strings.NewReader(m))
	for {
		var obj struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Image string } `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("manifest: %v", err)
		}
		kinds = append(kinds, obj.Kind)
		switch obj.Kind {
		case "ConfigMap":
			if !strings.Contains(obj.Data["net-conf.json"], `"Network": "10.244.0.0/16"`) || !strings.Contains(obj.Data["net-conf.json"], `"host-gw"`) {
				t.Errorf("net-conf.json = %s", obj.Data["net-conf.json"])
			}
			script = obj.Data["cni-conf.sh"]
		case "DaemonSet":
			for _, c := range obj.Spec.Template.Spec.Containers {
				images = append(images, c.Image)
			}
		}
	}
	if got := strings.Join(kinds, ","); got != "Namespace,ClusterRole,ClusterRoleBinding,ServiceAccount,ConfigMap,DaemonSet" {
		t.Fatalf("kinds = %s", got)
	}
	if !strings.Contains(m, "value: site-control-plane\n") {
		t.Errorf("flanneld is not told the API server's host")
	}
	if len(images) != 2 || images[0] != FlannelImage || images[1] != FlannelImage {
		t.Errorf("images = %v, want %s", images, FlannelImage)
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the CNI-config script")
	}
	for _, tc := range []struct{ subnet, want string }{
		{"10.244.1.1/24", "10.244.1.0/24"},
		{"10.244.130.1/23", "10.244.130.0/23"},
		{"10.245.7.65/26", "10.245.7.64/26"},
	} {
		dir := t.TempDir()
		env, conf := filepath.Join(dir, "subnet.env"), filepath.Join(dir, "10-flannel.conflist")
		if err := os.WriteFile(env, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET="+tc.subnet+"\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bash, "-c", script)
		cmd.Env = []string{"SUBNET_ENV=" + env, "CNI_CONF=" + conf, "PATH=" + os.Getenv("PATH")}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var b []byte
		for ctx.Err() == nil {
			if b, err = os.ReadFile(conf); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		_ = cmd.Wait()
		var conflist struct {
			Plugins []struct {
				Type string
				MTU  int
				IPAM struct {
					Ranges [][]struct{ Subnet string }
				}
			}
		}
		if err := json.Unmarshal(b, &conflist); err != nil {
			t.Fatalf("%s: conflist %q: %v", tc.subnet, b, err)
		}
		if len(conflist.Plugins) != 2 || conflist.Plugins[0].Type != "bridge" || conflist.Plugins[0].MTU != 1450 ||
			len(conflist.Plugins[0].IPAM.Ranges) != 1 || conflist.Plugins[0].IPAM.Ranges[0][0].Subnet != tc.want {
			t.Errorf("%s: conflist = %s, want bridge on %s with MTU 1450", tc.subnet, b, tc.want)
		}
	}
}
