package kinde2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/clusters/kind"
)

// docker runs the docker CLI and returns its stdout.
func docker(args ...string) string {
	GinkgoHelper()
	out, err := exec.Command("docker", args...).Output()
	Expect(err).NotTo(HaveOccurred(), "docker %v", args)
	return strings.TrimSpace(string(out))
}

// leftovers lists what Docker still has of a cluster: containers,
// networks and volumes named after it.
func leftovers(name string) []string {
	GinkgoHelper()
	var left []string
	for _, what := range [][]string{
		{"ps", "-a", "--format", "{{.Names}}", "--filter", "name=" + name},
		{"network", "ls", "--format", "{{.Name}}", "--filter", "name=" + name},
		{"volume", "ls", "--format", "{{.Name}}", "--filter", "name=" + name},
	} {
		if out := docker(what...); out != "" {
			left = append(left, what[0]+": "+out)
		}
	}
	return left
}

var _ = Describe("clusters and their cleanup", func() {
	It("refuses a taken name, a missing image and a missing Docker CLI, saying what to do", func() {
		ctx := context.Background()
		_, err := clusters.Create(ctx, kind.ClusterSpec{Name: cluster.Name, NodeImage: nodeImage})
		Expect(errors.Is(err, kind.ErrNameTaken)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("edgefault cleanup"))

		_, err = clusters.Create(ctx, kind.ClusterSpec{Name: "ef-noimage", NodeImage: "edgefault/kind-node:missing"})
		Expect(err).To(MatchError(ContainSubstring("edgefault kind node-image")))
		Expect(leftovers("ef-noimage")).To(BeEmpty())

		GinkgoT().Setenv("PATH", GinkgoT().TempDir())
		_, err = kind.EnsureEngine(ctx, kind.EngineOptions{Ledger: led})
		Expect(errors.Is(err, kind.ErrNoDocker)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("apt-get install docker.io"))
	})

	It("leaves nothing behind after delete, nor after cleanup of a create killed with SIGKILL", func() {
		name := fmt.Sprintf("ef-kill-%d", os.Getpid()%10000)
		cmd := exec.Command(bin, "kind", "create", name, "--workers", "1", "--image", nodeImage)
		cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		Expect(cmd.Start()).To(Succeed())
		// Mid-create: the node containers exist, kubeadm is at work.
		Eventually(func() string {
			out, _ := exec.Command("docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "name="+name).Output()
			return string(out)
		}, 2*time.Minute, 200*time.Millisecond).Should(ContainSubstring(name + "-worker"))
		time.Sleep(3 * time.Second)
		Expect(syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)).To(Succeed())
		_ = cmd.Wait()
		Expect(leftovers(name)).NotTo(BeEmpty(), "the kill came too late to leave anything")

		out := mustRun("cleanup", "--fleet", "kind-"+name)
		Expect(out).To(ContainSubstring("cleaned up kind-" + name))
		Expect(leftovers(name)).To(BeEmpty())

		// A whole create, then delete.
		start := time.Now()
		mustRun("kind", "create", name, "--workers", "0", "--image", nodeImage)
		GinkgoWriter.Printf("a one-node cluster came up in %s\n", time.Since(start).Round(100*time.Millisecond))
		mustRun("kind", "delete", name)
		Expect(leftovers(name)).To(BeEmpty())
		_, err := run("kind", "delete", name)
		Expect(err).To(HaveOccurred(), "deleting what is gone says so")
	})
})
