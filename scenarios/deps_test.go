package scenarios

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goTool finds the go command: on PATH, in GOROOT, or at /usr/local/go.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	for _, p := range []string{filepath.Join(runtime.GOROOT(), "bin", "go"), "/usr/local/go/bin/go"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// TestNoKernelDependencies keeps the scenario format buildable without the
// machinery that applies impairments: no netlink, nftables, ledger or
// shaper or its other subpackages (shaper/impair, the model, and
// shaper/trace, its CSV form over time, are allowed).
func TestNoKernelDependencies(t *testing.T) {
	gocmd := goTool()
	if gocmd == "" {
		t.Skip("no go command found (not on PATH, in GOROOT or /usr/local/go/bin): cannot list dependencies")
	}
	out, err := exec.Command(gocmd, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/edgefault/edgefault/scenarios" {
		t.Fatalf("go list -deps listed something other than package scenarios:\n%s", out)
	}
	const shaper = "github.com/edgefault/edgefault/shaper"
	for _, d := range deps {
		if strings.Contains(d, "netlink") || strings.Contains(d, "nftables") || strings.Contains(d, "/ledger") ||
			d == shaper || (strings.HasPrefix(d, shaper+"/") && d != shaper+"/impair" && d != shaper+"/trace") {
			t.Errorf("package scenarios depends on %s; it must build without netlink, nftables, the ledger and the shaper (use shaper/impair and units)", d)
		}
	}
}
