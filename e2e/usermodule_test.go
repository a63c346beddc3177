package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The README's Ginkgo example, in a module of its own as a user would
// have it: its suite calls nothing of edgefault's but edgetest, its test
// binary is not edgefault's, and it must pass with edgeguard installed
// and the control plane cached, and leave nothing behind.
var _ = Describe("a user's own suite", func() {
	It("plays the README's example in an outside module", func(ctx SpecContext) {
		root, err := filepath.Abs("..")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		Expect(os.CopyFS(dir, os.DirFS("testdata/usermodule"))).To(Succeed())
		// The module requires edgefault from this checkout, pinned to
		// the versions this checkout uses.
		ours, err := os.ReadFile(filepath.Join(root, "go.mod"))
		Expect(err).NotTo(HaveOccurred())
		goLine := ""
		for _, l := range strings.Split(string(ours), "\n") {
			if strings.HasPrefix(l, "go ") {
				goLine = l
			}
		}
		Expect(goLine).NotTo(BeEmpty(), "no go line in go.mod")
		gomod := "module example.com/telemetry\n\n" + goLine + "\n\nrequire github.com/edgefault/edgefault v0.0.0\n\nreplace github.com/edgefault/edgefault => " + root + "\n"
		Expect(os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644)).To(Succeed())
		sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)).To(Succeed())
		goCmd := func(args ...string) string {
			GinkgoHelper()
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "go %s:\n%s", strings.Join(args, " "), out)
			return string(out)
		}
		goCmd("mod", "tidy")
		goCmd("test", "-c", "-o", "suite.test", ".")

		suite := exec.CommandContext(ctx, filepath.Join(dir, "suite.test"), "-test.v", "-ginkgo.v")
		suite.Dir = dir
		// What the README tells a user to have: edgeguard at $EDGEGUARD
		// (or on PATH), root, and edgefault setup done.
		suite.Env = append(os.Environ(), "EDGEGUARD="+edgeguard)
		out, err := suite.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "the user's suite failed:\n%s", out)
		Expect(string(out)).To(ContainSubstring("Ran 1 of 1 Specs"))
		// It took its fleet down.
		Expect(mustRun("fleet", "list")).To(ContainSubstring("no fleets are up"))
	})
})
