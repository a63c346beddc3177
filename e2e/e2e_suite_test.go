// Package e2e holds edgefault's end-to-end suites: the real binary, run as
// a user would, against the real kernel.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper"
)

func TestMain(m *testing.M) {
	shaper.RunHelperIfInvoked()
	os.Exit(m.Run())
}

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "edgefault end-to-end")
}

var (
	bin       string // the edgefault binary under test
	edgeguard string // the edgeguard binary under test
	stateDir  string // its private state directory
)

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Skip("the end-to-end suites need root (network namespaces, qdiscs); CI runs as root")
	}
	dir, err := os.MkdirTemp("", "edgefault-e2e-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	// Readable by others, so the binary can be run as an unprivileged user.
	Expect(os.Chmod(dir, 0o755)).To(Succeed())
	bin = filepath.Join(dir, "edgefault")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/edgefault").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	edgeguard = filepath.Join(dir, "edgeguard")
	out, err = exec.Command("go", "build", "-o", edgeguard, "../cmd/edgeguard").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	stateDir = filepath.Join(dir, "state")
	// A world of its own: the suite's ledger is not the machine's.
	os.Setenv("EDGEFAULT_STATE_DIR", stateDir)
	DeferCleanup(func() {
		_, _ = run("cleanup")
	})
})

// run runs the binary and returns its combined output.
func run(args ...string) (string, error) {
	var b bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// mustRun runs the binary and fails the spec if it fails.
func mustRun(args ...string) string {
	GinkgoHelper()
	out, err := run(args...)
	Expect(err).NotTo(HaveOccurred(), "edgefault %v:\n%s", args, out)
	return out
}

// runtimeFleet brings up sites as fleet <prefix><pid> with the cloud's
// edgeguard services running and a shaper for it; all of it is taken down
// when the calling container (or spec) ends.
func runtimeFleet(prefix string, sites []scenarios.Site, opts ...netns.Option) (*netns.Fleet, *harness.Cloud, *shaper.Shaper) {
	GinkgoHelper()
	ctx := context.Background()
	p, err := netns.NewProvider(opts...)
	Expect(err).NotTo(HaveOccurred())
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%10000)
	f, err := p.UpFleet(ctx, name, &scenarios.FleetSpec{Sites: sites})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(p.Down(ctx, name)).To(Succeed()) })
	cloud, err := harness.StartCloud(ctx, f, edgeguard)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cloud.Stop)
	sh, err := f.Shaper()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sh.Close)
	return f, cloud, sh
}
