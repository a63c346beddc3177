package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/runtime/speedserver"
)

// The DaemonSet gives the edgeguard container 64 MiB (deploy/edgeguard.yaml).
const daemonSetMemory = 64 << 20

// edgeguard serve, a real process in a memory cgroup limited as the
// DaemonSet's container is, under the load that took it to 415 MB before
// bodies were budgeted: 16 malformed 16 MiB posts at once beside producers
// appending 1 MiB records. It is not OOM-killed (it was, before bodies
// were read at their size, batches sent without a copy and the Go heap
// limited from the cgroup) and every good record is stored. Then the budget's other
// half: a 16 MiB body trickled in holds its share, a second one is told
// 429 with Retry-After once it waited limit.MaxWait, and small appends flow
// beside both.
func TestServeStaysUnderTheDaemonSetMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("about 40 s: skipped with -short")
	}
	cg := newMemCgroup(t, daemonSetMemory)
	dir := t.TempDir()
	speed := httptest.NewServer(speedserver.New(nil))
	defer speed.Close()
	snk, err := sink.Open(filepath.Join(dir, "sink.db"), nil, sink.WithoutAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	sinkSrv := httptest.NewServer(snk)
	defer sinkSrv.Close()

	sock := filepath.Join(dir, "edgeguard.sock")
	// The shell joins the cgroup before it execs edgeguard, so the process
	// starts under its limit, as in a container, and sees it.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(cg.dir, "cgroup.procs"), os.Args[0], "serve", "--node=mem1", "--listen=127.0.0.1:0", "--socket="+sock,
		"--server="+speed.URL, "--min-download=1mbit", "--interval=1s",
		"--buffer="+filepath.Join(dir, "buffer.db"), "--sink="+sinkSrv.URL)
	cmd.Env = append(os.Environ(), "EDGEGUARD_TEST_AS_MAIN=1", "GOMAXPROCS=2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	post := func(body io.Reader, n int64, query string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodPost, "http://edgeguard/v1/records"+query, body)
		req.ContentLength = n
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(b), nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, err := post(strings.NewReader("up?"), 3, "?stream=probe"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgeguard serve did not come up on %s: %s", sock, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// What the process itself holds (anonymous memory: heap, stacks),
	// sampled through the flood; page cache is reclaimable and not its.
	var anonPeak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		for {
			select {
			case <-sampling:
				return
			case <-time.After(10 * time.Millisecond):
				if a := cg.anon(); a > anonPeak.Load() {
					anonPeak.Store(a)
				}
			}
		}
	}()

	// The flood, and the producers beside it.
	malformed := func() io.Reader {
		// A JSON string that never closes: read whole before it fails.
		return io.MultiReader(strings.NewReader(`{"records":[{"stream":"s","payload":"`), io.LimitReader(repeat('A'), 16<<20-40))
	}
	var wg sync.WaitGroup
	var refused, stored, busy atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, err := post(malformed(), 16<<20-40+int64(len(`{"records":[{"stream":"s","payload":"`)), "")
			if err == nil && (code == 400 || code == 429) {
				refused.Add(1)
			}
		}()
	}
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				for try := 0; try < 20; try++ {
					code, _, err := post(io.LimitReader(repeat(byte('a'+p)), 1<<20), 1<<20, "?stream=telemetry")
					if err == nil && code == 200 {
						stored.Add(1)
						break
					}
					if code == 429 {
						busy.Add(1)
						time.Sleep(time.Second)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(sampling)
	select {
	case <-exited:
		t.Fatalf("edgeguard serve died under the flood (%v): oom kills %d\n%s", exitErr, cg.oomKills(), stderr.String())
	default:
	}
	// The kernel enforces the limit, so surviving it is the test; VmHWM
	// also counts shared file pages (the binary, the buffer's map) that
	// are charged elsewhere or reclaimable, so it is only reported.
	hwm := peakRSS(t, cmd.Process.Pid)
	t.Logf("flood: %d of 16 malformed refused, %d of 20 1-MiB records stored (%d told busy first); anonymous memory peak %.1f MiB of %d MiB; cgroup peak %.1f MiB (page cache included), VmHWM %.1f MiB",
		refused.Load(), stored.Load(), busy.Load(), float64(anonPeak.Load())/(1<<20), daemonSetMemory>>20, float64(cg.peak())/(1<<20), float64(hwm)/(1<<20))
	if refused.Load() != 16 || stored.Load() != 20 {
		t.Errorf("%d of 16 malformed bodies refused, %d of 20 good records stored", refused.Load(), stored.Load())
	}
	if n := cg.oomKills(); n != 0 {
		t.Errorf("%d OOM kills in the cgroup", n)
	}

	// A trickled 16 MiB body holds its share of the budget ...
	pr, pw := io.Pipe()
	trickled := make(chan int, 1)
	go func() {
		code, _, _ := post(pr, 16<<20, "?stream=slow")
		trickled <- code
	}()
	stopTrickle := make(chan struct{})
	go func() {
		defer pw.Close()
		for {
			select {
			case <-stopTrickle:
				pw.CloseWithError(errors.New("stopped"))
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := pw.Write(make([]byte, 1024)); err != nil {
					return
				}
			}
		}
	}()
	defer close(stopTrickle)
	time.Sleep(time.Second)
	// ... small appends flow beside it ...
	start := time.Now()
	if code, msg, err := post(strings.NewReader("sale"), 4, "?stream=pos"); err != nil || code != 200 {
		t.Fatalf("a small append beside a held 16 MiB body: %d %s %v", code, msg, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a small append took %v beside a held body", d)
	}
	// ... and a second large one waits its turn, then is told to come back.
	start = time.Now()
	code, msg, err := post(io.LimitReader(repeat('b'), 16<<20), 16<<20, "?stream=big")
	waited := time.Since(start)
	t.Logf("second 16 MiB body: %d after %v: %s", code, waited.Round(time.Millisecond), strings.TrimSpace(msg))
	if err != nil || code != http.StatusTooManyRequests || !strings.HasPrefix(msg, "1 ") || waited < 25*time.Second {
		t.Errorf("second 16 MiB body while the budget is held: %d %q %v after %v, want 429 with Retry-After after ~30 s", code, msg, err, waited)
	}
	select {
	case <-exited:
		t.Fatalf("edgeguard serve died: %v\n%s", exitErr, stderr.String())
	default:
	}
}

type repeatReader byte

func repeat(b byte) io.Reader { return repeatReader(b) }

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// peakRSS is the process's VmHWM.
func peakRSS(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// memCgroup is a memory cgroup made for one test (cgroup v1 or v2).
type memCgroup struct {
	dir string
	v2  bool
}

func newMemCgroup(t *testing.T, limit int64) *memCgroup {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a memory cgroup (run as root, as make test does)")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	cg := &memCgroup{}
	for _, line := range strings.Split(string(self), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && parts[0] == "0" {
			// Under the root, which may enable memory for its children
			// (a non-root cgroup with processes of its own may not).
			cg.dir, cg.v2 = "/sys/fs/cgroup", true
		} else if strings.Contains(","+parts[1]+",", ",memory,") {
			cg.dir = filepath.Join("/sys/fs/cgroup/memory", parts[2])
		}
	}
	if cg.dir == "" {
		t.Skip("no memory cgroup controller on this machine: the memory bound cannot be enforced")
	}
	cg.dir = filepath.Join(cg.dir, fmt.Sprintf("edgefault-memtest-%d", os.Getpid()))
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup here (%v): the memory bound cannot be enforced", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if os.Remove(cg.dir) == nil || errors.Is(os.Remove(cg.dir), os.ErrNotExist) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", cg.dir)
	})
	set := func(file, v string) error { return os.WriteFile(filepath.Join(cg.dir, file), []byte(v), 0o644) }
	lim := strconv.FormatInt(limit, 10)
	if cg.v2 {
		if err := set("memory.max", lim); err != nil {
			t.Skipf("the memory controller is not enabled for %s (%v)", cg.dir, err)
		}
		_ = set("memory.swap.max", "0")
	} else {
		if err := set("memory.limit_in_bytes", lim); err != nil {
			t.Fatal(err)
		}
		// No swapping around the limit: with swap on and no swap
		// accounting, the limit would never bite and the test could not fail.
		if set("memory.memsw.limit_in_bytes", lim) != nil {
			if b, _ := os.ReadFile("/proc/swaps"); len(strings.Split(strings.TrimSpace(string(b)), "\n")) > 1 {
				t.Skip("swap is on and the memory cgroup does not account it (no memory.memsw): the limit cannot be enforced")
			}
		}
	}
	return cg
}

func (cg *memCgroup) read(file string) string {
	b, _ := os.ReadFile(filepath.Join(cg.dir, file))
	return string(b)
}

// peak is the cgroup's peak charge (page cache included), 0 if unknown.
func (cg *memCgroup) peak() int64 {
	f := "memory.max_usage_in_bytes"
	if cg.v2 {
		f = "memory.peak"
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(cg.read(f)), 10, 64)
	return n
}

// anon is the cgroup's anonymous memory now (v1 rss, v2 anon).
func (cg *memCgroup) anon() int64 {
	key := "rss "
	if cg.v2 {
		key = "anon "
	}
	for _, line := range strings.Split(cg.read("memory.stat"), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return n
		}
	}
	return 0
}

// oomKills counts the processes the kernel killed for the limit.
func (cg *memCgroup) oomKills() int {
	f := "memory.oom_control"
	if cg.v2 {
		f = "memory.events"
	}
	for _, line := range strings.Split(cg.read(f), "\n") {
		if rest, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}
