package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/google/nftables"
	vnetns "github.com/vishvananda/netns"
)

// namespacesOf lists the named namespaces of a fleet.
func namespacesOf(fleet string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fleet+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// processesNaming lists processes whose command line contains s.
func processesNaming(s string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cl := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cl, s) {
			out = append(out, cl)
		}
	}
	return out
}

// processesOfNaming is processesNaming for the processes running the
// binary exe only: the kind suite, running beside this one, shapes links
// of this namespace with delayers of its own.
func processesOfNaming(exe, s string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if x, err := os.Readlink(filepath.Join(filepath.Dir(p), "exe")); err != nil || x != exe {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			if cl := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cl, s) {
				out = append(out, cl)
			}
		}
	}
	return out
}

// nftTables lists the nft tables in a named namespace ("" = this one).
func nftTables(ns string) []string {
	var opts []nftables.ConnOption
	if ns != "" {
		h, err := vnetns.GetFromName(ns)
		Expect(err).NotTo(HaveOccurred())
		defer h.Close()
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	Expect(err).NotTo(HaveOccurred())
	ts, err := c.ListTables()
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

// helpersOf lists processes working in a fleet's namespaces (the delayer
// helpers name their namespace on the command line).
func helpersOf(fleet string) []string { return processesNaming("/run/netns/" + fleet + "-") }

func ledgerLines(owner string) int {
	b, err := os.ReadFile(filepath.Join(stateDir, "ledger", owner+".jsonl"))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// reachable reports whether member can open a TCP connection to the cloud.
func reachable(fleet, member string) bool {
	l, err := traffic.Listen(fleet+"-cloud", "tcp4", "100.64.0.1:0")
	if err != nil {
		return false
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := traffic.Dial(ctx, fleet+"-"+member, "tcp4", l.Addr().String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func bigTopology(nodes int) string {
	f := filepath.Join(GinkgoT().TempDir(), "big.yaml")
	Expect(os.WriteFile(f, []byte(fmt.Sprintf(`apiVersion: edgefault.io/v1alpha1
kind: Fleet
metadata: {name: big}
spec:
  sites:
  - name: depot
    gateway: {name: depot-gw, uplink: {rate: 20mbit, delay: 30ms}}
    nodeCount: %d
`, nodes)), 0o644)).To(Succeed())
	return f
}

var _ = Describe("cleanup after the harness is killed", Ordered, func() {
	// Names of this run's own (a namespace left by another run on the
	// machine must not get in the way).
	var (
		other   = fmt.Sprintf("e2e-other%d", os.Getpid()%1000)
		victimU = fmt.Sprintf("e2e-up%d", os.Getpid()%1000)
		victimS = fmt.Sprintf("e2e-shape%d", os.Getpid()%1000)
	)
	BeforeAll(func() {
		// A fleet that must survive everything done to the victims.
		mustRun("fleet", "up", "--control-planes=false", "--name", other)
		mustRun("shape", "--fleet", other, "store-pos", "--delay", "20ms", "--loss", "1%")
		DeferCleanup(func() { mustRun("fleet", "down", "--name", other) })
	})

	otherIntact := func() {
		GinkgoHelper()
		Expect(namespacesOf(other)).To(HaveLen(13), "the other fleet lost namespaces")
		Expect(helpersOf(other)).NotTo(BeEmpty(), "the other fleet's delayers were stopped")
		Expect(reachable(other, "store-pos")).To(BeTrue(), "the other fleet's store lost the cloud")
		Expect(mustRun("fleet", "list", "--name", other)).To(And(ContainSubstring("delay 20ms, loss 1%"), MatchRegexp(`(?m)^%s\s+netns\s+`, other)))
	}

	It("removes a fleet killed half-way through coming up", func() {
		victim := victimU
		cmd := exec.Command(bin, "fleet", "up", "--control-planes=false", "-f", bigTopology(300), "--name", victim)
		out, err := os.CreateTemp(GinkgoT().TempDir(), "fleet-up-*.log")
		Expect(err).NotTo(HaveOccurred())
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan struct{})
		go func() { _, _ = cmd.Process.Wait(); close(exited) }()
		// Kill it once it has recorded (and so started creating) some namespaces.
		Eventually(func() int {
			select {
			case <-exited:
				b, _ := os.ReadFile(out.Name())
				Fail("fleet up exited before it could be killed:\n" + string(b))
			default:
			}
			return ledgerLines(victim)
		}, 20*time.Second, 2*time.Millisecond).Should(BeNumerically(">=", 40))
		Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
		<-exited
		Expect(namespacesOf(victim)).NotTo(BeEmpty(), "the kill came too late to test anything")

		Expect(mustRun("cleanup", "--fleet", victim)).To(ContainSubstring("cleaned up " + victim))
		Expect(namespacesOf(victim)).To(BeEmpty())
		Expect(helpersOf(victim)).To(BeEmpty())
		Expect(filepath.Join(stateDir, "ledger", victim+".jsonl")).NotTo(BeAnExistingFile())
		Expect(filepath.Join(stateDir, "fleets", victim+".json")).NotTo(BeAnExistingFile())
		otherIntact()
	})

	It("removes a fleet whose shaping was killed mid-change", func() {
		victim := victimS
		mustRun("fleet", "up", "--control-planes=false", "--name", victim)
		for i, after := range []time.Duration{0, 3 * time.Millisecond, 15 * time.Millisecond, 40 * time.Millisecond} {
			cmd := exec.Command(bin, "shape", "--fleet", victim, "factory-gw-a", "--rate", "3mbit", "--delay", fmt.Sprintf("%dms", 20+i), "--jitter", "5ms", "--loss", "2%")
			Expect(cmd.Start()).To(Succeed())
			time.Sleep(after)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		}
		mustRun("shape", "--fleet", victim, "store-pos", "--delay", "30ms", "--to", "100.64.0.1")
		Expect(helpersOf(victim)).NotTo(BeEmpty())
		// Kill the harness itself mid-way through a fleet down, too.
		cmd := exec.Command(bin, "fleet", "down", "--name", victim)
		Expect(cmd.Start()).To(Succeed())
		time.Sleep(2 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()

		mustRun("cleanup", "--fleet", victim)
		Expect(namespacesOf(victim)).To(BeEmpty())
		Expect(helpersOf(victim)).To(BeEmpty())
		Expect(ledgerLines(victim)).To(BeZero())
		otherIntact()
	})
})

var _ = Describe("bad input", Ordered, func() {
	const fleet = "e2e-bad"
	BeforeAll(func() {
		mustRun("fleet", "up", "--control-planes=false", "--name", fleet)
		mustRun("shape", "--fleet", fleet, "truck-1", "--rate", "2mbit")
		DeferCleanup(func() { mustRun("fleet", "down", "--name", fleet) })
	})

	DescribeTable("is refused with a clear error and changes nothing",
		func(want string, args ...string) {
			before := ledgerLines(fleet)
			listBefore := mustRun("fleet", "list", "--name", fleet)
			out, err := run(args...)
			Expect(err).To(HaveOccurred(), "edgefault %v succeeded:\n%s", args, out)
			Expect(out).To(ContainSubstring(want))
			Expect(ledgerLines(fleet)).To(Equal(before), "the ledger changed")
			Expect(mustRun("fleet", "list", "--name", fleet)).To(Equal(listBefore), "shaping changed")
		},
		Entry("unknown node", `no node or gateway "nosuch"`, "shape", "--fleet", fleet, "nosuch", "--rate", "1mbit"),
		Entry("mbps", `unit "mbps" is ambiguous`, "shape", "--fleet", fleet, "truck-1", "--rate", "5mbps"),
		Entry("mbps for an unknown node: the unit is reported first", `unit "mbps" is ambiguous`, "shape", "--fleet", fleet, "nosuch", "--rate", "5mbps"),
		Entry("a rate like 5mbps?", `unknown unit "mbps?"`, "shape", "--fleet", fleet, "truck-1", "--rate", "5mbps?"),
		Entry("Mb/s", `write 5mbit`, "shape", "--fleet", fleet, "truck-1", "--rate", "5Mb/s"),
		Entry("no unit", `has no unit`, "shape", "--fleet", fleet, "truck-1", "--rate", "5"),
		Entry("negative rate", `negative`, "shape", "--fleet", fleet, "truck-1", "--rate", "-5mbit"),
		Entry("negative delay", `delay "-10ms" is negative`, "shape", "--fleet", fleet, "truck-1", "--delay", "-10ms"),
		Entry("loss over 100%", `loss "120%" is out of range`, "shape", "--fleet", fleet, "truck-1", "--loss", "120%"),
		Entry("negative loss", `out of range`, "shape", "--fleet", fleet, "truck-1", "--loss", "-1%"),
		Entry("jitter over delay", `jitter 50ms is larger than delay 10ms`, "shape", "--fleet", fleet, "truck-1", "--delay", "10ms", "--jitter", "50ms"),
		Entry("bad direction", `use egress, ingress or both`, "shape", "--fleet", fleet, "truck-1", "--rate", "1mbit", "--direction", "up"),
		Entry("bad CIDR", `is not a CIDR`, "shape", "--fleet", fleet, "truck-1", "--rate", "1mbit", "--to", "10.0.0.0/33"),
		Entry("the cloud", `is the cloud`, "shape", "--fleet", fleet, "cloud", "--rate", "1mbit"),
		Entry("nothing to do", `nothing to do`, "shape", "--fleet", fleet, "truck-1"),
		Entry("unknown fleet", `fleet "nosuch" is not up`, "shape", "--fleet", "nosuch", "truck-1", "--rate", "1mbit"),
		Entry("a fleet that exists", `already exists`, "fleet", "up", "--name", fleet),
		Entry("bad fleet name", `fleet name`, "fleet", "up", "--name", "Bad Name"),
	)

	It("says root is needed when it is not root, and changes nothing", func() {
		before := ledgerLines(fleet)
		for _, args := range [][]string{
			{"shape", "--fleet", fleet, "truck-1", "--rate", "1mbit"},
			{"fleet", "up", "--name", "e2e-noroot"},
			{"cleanup"},
			{"doctor"},
		} {
			cmd := exec.Command(bin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			Expect(err).To(HaveOccurred(), "%v as nobody:\n%s", args, out)
			Expect(string(out)).To(ContainSubstring("needs root"), "%v", args)
		}
		Expect(ledgerLines(fleet)).To(Equal(before))
		Expect(namespacesOf("e2e-noroot")).To(BeEmpty())
	})

	It("refuses a malformed topology with file and line", func() {
		f := filepath.Join(GinkgoT().TempDir(), "bad.yaml")
		Expect(os.WriteFile(f, []byte("apiVersion: edgefault.io/v1alpha1\nkind: Fleet\nspec:\n  sites:\n  - name: s\n    gateway: {name: gw, uplink: {rate: 10mbps}}\n"), 0o644)).To(Succeed())
		out, err := run("fleet", "up", "--control-planes=false", "-f", f, "--name", "e2e-badtopo")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring(f + ":6: spec.sites[0].gateway.uplink.rate"))
		Expect(namespacesOf("e2e-badtopo")).To(BeEmpty())
	})
})

// The README's example: a server started with fleet exec in the
// background, then the fleet taken down. Nothing of it may run on,
// holding the deleted namespace alive.
var _ = Describe("fleet exec", func() {
	It("ends, with what it started, when its fleet goes down", func() {
		name := fmt.Sprintf("e2e-exec%d", os.Getpid()%1000)
		mustRun("fleet", "up", "--control-planes=false", "--cloud-services=false", "--name", name)
		downed := false
		DeferCleanup(func() {
			if !downed {
				_, _ = run("fleet", "down", "--name", name)
			}
		})
		// A shell that leaves a child behind, as a server started with &.
		exe := exec.Command(bin, "fleet", "exec", "--name", name, "cloud", "--", "sh", "-c", "sleep 300 & sleep 300")
		Expect(exe.Start()).To(Succeed())
		exited := make(chan error, 1)
		go func() { exited <- exe.Wait() }()
		Eventually(func() string {
			b, _ := os.ReadFile(filepath.Join(stateDir, "ledger", name+".jsonl"))
			return string(b)
		}).WithTimeout(10*time.Second).Should(ContainSubstring("exec sh on cloud"), "the exec'd command is not in the ledger")
		mustRun("fleet", "down", "--name", name)
		downed = true
		Eventually(exited).WithTimeout(15*time.Second).Should(Receive(), "fleet exec still runs after its fleet went down")
		Expect(namespacesOf(name)).To(BeEmpty())
	})
})

var _ = Describe("the CLI", func() {
	It("has --help on every command", func() {
		for _, c := range [][]string{{}, {"doctor"}, {"fleet"}, {"fleet", "up"}, {"fleet", "down"}, {"fleet", "list"}, {"fleet", "exec"}, {"fleet", "kubeconfig"}, {"shape"}, {"cleanup"}, {"demo"}, {"setup"}} {
			out := mustRun(append(c, "--help")...)
			Expect(out).To(ContainSubstring("Usage:"), "%v --help", c)
		}
	})

	It("reports the kernel and the backend it picks", func() {
		out := mustRun("doctor")
		Expect(out).To(MatchRegexp(`backend \(auto\): (netem|fallback)`))
		Expect(out).To(ContainSubstring("qdisc tbf"))
	})

	It("exits non-zero on an unknown command", func() {
		_, err := run("frobnicate")
		Expect(err).To(HaveOccurred())
	})

	It("refuses a provider it does not have, saying which it has", func() {
		for _, c := range [][]string{{"fleet", "up"}, {"fleet", "list"}, {"run", "vehicle"}, {"certify"}, {"scenario", "check", "../scenarios/builtin/vehicle.yaml"}} {
			out, err := run(append(c, "--provider", "kind9")...)
			Expect(err).To(HaveOccurred(), "%v", c)
			Expect(out).To(And(ContainSubstring(`--provider "kind9"`), ContainSubstring("netns")), "%v", c)
		}
	})
})

var _ = Describe("shaping a link outside any fleet", func() {
	It("restores it on cleanup, even after the shaping process is killed", func() {
		ns := fmt.Sprintf("e2e-link-%d", os.Getpid())
		host := fmt.Sprintf("e2eh%d", os.Getpid()%100000)
		for _, c := range [][]string{
			{"ip", "netns", "add", ns},
			{"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"ip", "link", "set", host, "up"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
		} {
			out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%v: %s", c, out)
		}
		DeferCleanup(func() {
			_ = exec.Command("ip", "netns", "del", ns).Run()
			_ = exec.Command("ip", "link", "del", host).Run()
		})
		mustRun("shape", "--link", ns+"/eth0", "--peer", host, "--rate", "2mbit", "--delay", "15ms", "--loss", "1%")
		mustRun("shape", "--link", ns+"/eth0", "--peer", host, "--outage")
		out, _ := exec.Command("ip", "link", "show", host).CombinedOutput()
		Expect(string(out)).To(ContainSubstring("state DOWN"), "the outage takes the peer down")
		mustRun("shape", "--link", ns+"/eth0", "--peer", host, "--rate", "2mbit")

		// A change that takes the peer down first and then starts a
		// delayer, killed in between: only the state file knows the peer
		// was up.
		cmd := exec.Command(bin, "shape", "--link", ns+"/eth0", "--peer", host, "--outage", "--delay", "40ms")
		Expect(cmd.Start()).To(Succeed())
		Eventually(func() string {
			o, _ := exec.Command("ip", "link", "show", host).CombinedOutput()
			return string(o)
		}, 5*time.Second, time.Millisecond).Should(ContainSubstring("state DOWN"))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()

		mustRun("cleanup")
		out, _ = exec.Command("ip", "link", "show", host).CombinedOutput()
		Expect(string(out)).To(ContainSubstring("state UP"), "the peer was up before: cleanup brings it back")
		q, _ := exec.Command("tc", "qdisc", "show", "dev", host).CombinedOutput()
		Expect(string(q)).NotTo(ContainSubstring("tbf"))
		Expect(string(q)).NotTo(ContainSubstring("ingress"))
		Expect(processesNaming("/run/netns/" + ns + " ")).To(BeEmpty())
		// None of ours was started there; the kind suite's may run.
		Expect(processesOfNaming(bin, "-netns  ")).To(BeEmpty(), "a delayer of the host namespace")
		Expect(nftTables(ns)).To(BeEmpty())
		Expect(nftTables("")).NotTo(ContainElement("edgefault-"+host), "the peer's nft table in the host namespace")
	})
})

var _ = Describe("site control planes", func() {
	It("are all stopped by cleanup after the harness is killed while starting them", func() {
		const victim = "e2e-cp"
		cmd := exec.Command(bin, "fleet", "up", "--name", victim) // site clusters are the default
		Expect(cmd.Start()).To(Succeed())
		// Kill it once the second site's API server is recorded: the first
		// site is complete, the second half-way.
		var started []ledger.Entry
		Eventually(func() int {
			started = nil
			l, err := ledger.Open(filepath.Join(stateDir, "ledger"))
			if err != nil {
				return 0
			}
			es, _ := l.Entries(victim)
			for _, e := range es {
				if e.Kind == ledger.KindProcess && strings.Contains(e.Name, " of site ") {
					started = append(started, e)
				}
			}
			return len(started)
		}, 90*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 7))
		Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
		_ = cmd.Wait()
		mustRun("cleanup", "--fleet", victim)
		for _, e := range started {
			Expect(e.Alive()).To(BeFalse(), "%s still running", e.Name)
			Expect(ledger.GroupAlive(e.PID)).To(BeFalse(), "%s's group still running", e.Name)
		}
		Expect(namespacesOf(victim)).To(BeEmpty())
		Expect(filepath.Join(stateDir, "fleets", victim)).NotTo(BeADirectory())
	})
})
