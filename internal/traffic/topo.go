package traffic

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Star is a small topology for tests and benchmarks: hosts joined by one
// bridge in a "fabric" namespace, the embedded fleet's shape in miniature.
// Host i has address 10.199.0.(i+1)/24 on eth0; its bridge port in the
// fabric is "p<i>".
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

// NewStar builds n hosts around a bridge, in namespaces named
// <prefix>-fab and <prefix>-h<i>.
func NewStar(prefix string, n int) (*Star, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root for network namespaces")
	}
	s := &Star{Prefix: prefix, Fabric: prefix + "-fab"}
	steps := [][]string{
		{"ip", "netns", "add", s.Fabric},
		{"ip", "-n", s.Fabric, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", s.Fabric, "link", "set", "br0", "up"},
	}
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("%s-h%d", prefix, i)
		s.Hosts = append(s.Hosts, h)
		steps = append(steps,
			[]string{"ip", "netns", "add", h},
			[]string{"ip", "-n", s.Fabric, "link", "add", s.Port(i), "type", "veth", "peer", "name", "eth0", "netns", h},
			[]string{"ip", "-n", s.Fabric, "link", "set", s.Port(i), "master", "br0", "up"},
			[]string{"ip", "-n", h, "addr", "add", s.Addr(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", h, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", h, "link", "set", "lo", "up"},
		)
	}
	for _, st := range steps {
		if err := sh(st...); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close removes the namespaces.
func (s *Star) Close() {
	for _, h := range s.Hosts {
		_ = sh("ip", "netns", "del", h)
	}
	_ = sh("ip", "netns", "del", s.Fabric)
}

// StarT is NewStar for a test: it skips without root and removes the
// namespaces when the test ends.
func StarT(t testing.TB, n int) *Star {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root)")
	}
	name := strings.ToLower(strings.NewReplacer("/", "", "_", "").Replace(t.Name()))
	if len(name) > 30 {
		name = name[:30]
	}
	s, err := NewStar(fmt.Sprintf("eft%d%s", os.Getpid()%100000, name), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
