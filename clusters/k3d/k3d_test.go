package k3d

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/ledger"
)

func TestCreateArgs(t *testing.T) {
	base := []string{"cluster", "create", "shop", "--servers", "1"}
	tests := []struct {
		name    string
		spec    ClusterSpec
		want    []string // each must appear, in order, after base
		absent  []string
		wantErr string
	}{
		{
			name:   "defaults",
			spec:   ClusterSpec{Name: "shop", Agents: 2},
			want:   []string{"--agents", "2", "--no-lb", "--wait", "--timeout", "5m0s", "--kubeconfig-update-default=false", "--kubeconfig-switch-context=false"},
			absent: []string{"--image", "--network", "--k3s-node-label"},
		},
		{
			name: "labels on agents, sorted; image, network, timeout",
			spec: ClusterSpec{Name: "shop", Agents: 1, Image: "rancher/k3s:v1.31.4-k3s1", Network: "edgefault-wan", Timeout: 90 * time.Second,
				Labels: map[string]string{"edgefault.io/site": "store-1", "edgefault.io/role": "node"}},
			want: []string{"--timeout", "1m30s", "--image", "rancher/k3s:v1.31.4-k3s1", "--network", "edgefault-wan",
				"--k3s-node-label", "edgefault.io/role=node@agent:*", "--k3s-node-label", "edgefault.io/site=store-1@agent:*"},
		},
		{
			name: "no agents: the server carries the labels",
			spec: ClusterSpec{Name: "shop", Labels: map[string]string{"site": "a"}},
			want: []string{"--agents", "0", "--k3s-node-label", "site=a@server:0"},
		},
		{name: "upper case name", spec: ClusterSpec{Name: "Shop"}, wantErr: "cluster name"},
		{name: "flag as name", spec: ClusterSpec{Name: "--help"}, wantErr: "cluster name"},
		{name: "long name", spec: ClusterSpec{Name: strings.Repeat("a", 33)}, wantErr: "cluster name"},
		{name: "negative agents", spec: ClusterSpec{Name: "a", Agents: -1}, wantErr: "agents"},
		{name: "node filter smuggled in a label", spec: ClusterSpec{Name: "a", Labels: map[string]string{"x": "y@server:0"}}, wantErr: "not a Kubernetes label"},
		{name: "bad label key", spec: ClusterSpec{Name: "a", Labels: map[string]string{"a b": "c"}}, wantErr: "not a Kubernetes label"},
		{name: "image with spaces", spec: ClusterSpec{Name: "a", Image: "k3s --privileged"}, wantErr: "image"},
		{name: "network as a flag", spec: ClusterSpec{Name: "a", Network: "--host"}, wantErr: "network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CreateArgs(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CreateArgs = %q, %v; want an error about %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got[:len(base)], base) {
				t.Fatalf("args start %q, want %q", got, base)
			}
			rest := got[len(base):]
			for _, w := range tt.want {
				i := slices.Index(rest, w)
				if i < 0 {
					t.Fatalf("args %q lack %q (in order)", got, w)
				}
				rest = rest[i+1:]
			}
			for _, a := range tt.absent {
				if slices.Contains(got, a) {
					t.Errorf("args %q have %q", got, a)
				}
			}
		})
	}
}

func TestOtherArgs(t *testing.T) {
	if got := DeleteArgs("shop"); !slices.Equal(got, []string{"cluster", "delete", "shop"}) {
		t.Errorf("DeleteArgs = %q", got)
	}
	if got := KubeconfigArgs("shop"); !slices.Equal(got, []string{"kubeconfig", "get", "shop"}) {
		t.Errorf("KubeconfigArgs = %q", got)
	}
	if got := ImportArgs("shop", "/tmp/img.tar"); !slices.Equal(got, []string{"image", "import", "/tmp/img.tar", "--cluster", "shop"}) {
		t.Errorf("ImportArgs = %q", got)
	}
}

func TestParseContainers(t *testing.T) {
	out := []byte("k3d-shop-agent-1\tagent\nk3d-shop-serverlb\tloadbalancer\nk3d-shop-agent-0\tagent\nk3d-shop-server-0\tserver\n\n")
	want := []Node{{"k3d-shop-server-0", "server"}, {"k3d-shop-agent-0", "agent"}, {"k3d-shop-agent-1", "agent"}}
	if got := parseContainers(out); !slices.Equal(got, want) {
		t.Errorf("parseContainers = %v, want %v", got, want)
	}
	if got := parseContainers(nil); len(got) != 0 {
		t.Errorf("parseContainers(nil) = %v", got)
	}
}

// Without k3d on PATH, nothing is recorded or run, and the error says what
// to install (and the alternative).
func TestNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	l, err := ledger.Open(t.TempDir() + "/ledger")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClusters(l, "k3d-test", nil)
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "install k3d") || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("NewClusters without k3d = %v, want ErrNotInstalled saying what to do", err)
	}
	if owners, _ := l.Owners(); len(owners) != 0 {
		t.Errorf("ledger owners %v after a refused NewClusters", owners)
	}
}
