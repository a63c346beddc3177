// Package kinde2e is the end-to-end suite on real kind clusters: a real
// Docker engine, the offline node image, a real kubelet running the
// runtime's DaemonSet as shipped. The suite shares one cluster.
package kinde2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/kind"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
)

func TestMain(m *testing.M) {
	shaper.RunHelperIfInvoked()
	kind.RunRuntimeWrapperIfInvoked()
	holdIfInvoked()
	os.Exit(m.Run())
}

func TestKind(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "edgefault on kind")
}

var (
	bin       string // the edgefault binary under test
	edgeguard string // the edgeguard binary under test
	stateDir  string
	led       *ledger.Ledger
	clusters  *kind.Clusters
	cluster   *kind.Cluster
	nodeImage string
)

// owner is the suite's ledger owner for the shared cluster.
const owner = "kind-e2e"

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Skip("the kind suite needs root (a Docker engine, network namespaces); CI runs as root")
	}
	if os.Getenv("EDGEFAULT_SKIP_KIND") != "" {
		Skip("EDGEFAULT_SKIP_KIND is set: the kind suite is skipped (CI runs it)")
	}
	dir, err := os.MkdirTemp("", "edgefault-kind-e2e-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	bin = filepath.Join(dir, "edgefault")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/edgefault").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	edgeguard = filepath.Join(dir, "edgeguard")
	// Static, as make build makes it: it is the runtime's image FROM
	// scratch.
	gb := exec.Command("go", "build", "-o", edgeguard, "../../cmd/edgeguard")
	gb.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err = gb.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	stateDir = filepath.Join(dir, "state")
	os.Setenv("EDGEFAULT_STATE_DIR", stateDir)
	// Last: everything the suite made, and a dockerd it started.
	DeferCleanup(func() {
		out, err := run("cleanup")
		Expect(err).NotTo(HaveOccurred(), out)
	})
	mustRun("kind", "engine", "start")
	start := time.Now()
	nodeImage = strings.TrimSpace(mustRunStdout("kind", "node-image"))
	GinkgoWriter.Printf("node image %s ready in %s\n", nodeImage, time.Since(start).Round(time.Second))
	led, err = ledger.Open(filepath.Join(stateDir, "ledger"))
	Expect(err).NotTo(HaveOccurred())
	clusters, err = kind.NewClusters(led, owner, nil)
	Expect(err).NotTo(HaveOccurred())
	start = time.Now()
	cluster, err = clusters.Create(context.Background(), kind.ClusterSpec{
		// Two workers: the existing-cluster specs need a cloud that is
		// neither the shaped node nor the API server's.
		Name: fmt.Sprintf("ef-e2e-%d", os.Getpid()%10000), Workers: 2, NodeImage: nodeImage,
		Labels: map[string]string{"edgefault.io/site": "e2e"},
	})
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("kind cluster %s Ready in %s\n", cluster.Name, time.Since(start).Round(100*time.Millisecond))
})

// run runs the binary and returns its combined output.
func run(args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func mustRun(args ...string) string {
	GinkgoHelper()
	out, err := run(args...)
	Expect(err).NotTo(HaveOccurred(), "edgefault %v:\n%s", args, out)
	return out
}

// mustRunStdout is mustRun keeping stdout apart (progress goes to stderr).
func mustRunStdout(args ...string) string {
	GinkgoHelper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr, GinkgoWriter)
	err := cmd.Run()
	Expect(err).NotTo(HaveOccurred(), "edgefault %v:\n%s", args, stderr.String())
	return stdout.String()
}
