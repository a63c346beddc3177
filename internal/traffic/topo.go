package traffic

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Star is a test topology: namespaces joined by one bridge in a "fabric"
// namespace, the embedded fleet's shape in miniature. Host i has address
// 10.199.0.(i+1)/24 on eth0; its bridge port in the fabric is "p<i>".
type Star struct {
	Prefix string
	Fabric string
	Hosts  []string
}

// Addr is host i's address.
func (s *Star) Addr(i int) string { return fmt.Sprintf("10.199.0.%d", i+1) }

// Port is the fabric-side name of host i's link.
func (s *Star) Port(i int) string { return fmt.Sprintf("p%d", i) }

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// NewStar builds n hosts around a bridge; t.Cleanup removes them.
func NewStar(t testing.TB, n int) *Star {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root)")
	}
	s := &Star{Prefix: fmt.Sprintf("eft%d%s", os.Getpid()%100000, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "")))}
	if len(s.Prefix) > 40 {
		s.Prefix = s.Prefix[:40]
	}
	s.Fabric = s.Prefix + "-fab"
	t.Cleanup(func() {
		for _, h := range s.Hosts {
			_ = sh("ip", "netns", "del", h)
		}
		_ = sh("ip", "netns", "del", s.Fabric)
	})
	must := func(args ...string) {
		if err := sh(args...); err != nil {
			t.Fatal(err)
		}
	}
	must("ip", "netns", "add", s.Fabric)
	must("ip", "-n", s.Fabric, "link", "add", "br0", "type", "bridge")
	must("ip", "-n", s.Fabric, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("%s-h%d", s.Prefix, i)
		s.Hosts = append(s.Hosts, h)
		must("ip", "netns", "add", h)
		must("ip", "-n", s.Fabric, "link", "add", s.Port(i), "type", "veth", "peer", "name", "eth0", "netns", h)
		must("ip", "-n", s.Fabric, "link", "set", s.Port(i), "master", "br0", "up")
		must("ip", "-n", h, "addr", "add", s.Addr(i)+"/24", "dev", "eth0")
		must("ip", "-n", h, "link", "set", "eth0", "up")
		must("ip", "-n", h, "link", "set", "lo", "up")
	}
	return s
}
