package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/internal/kubetest"
	"github.com/edgefault/edgefault/internal/traffic"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/shaper"
	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) {
	ledger.RunGateIfInvoked()
	shaper.RunHelperIfInvoked()
	os.Exit(m.Run())
}

// Against a real kube-apiserver and a real link: the agent refuses a
// request without the token and a node the run's ConfigMap does not name,
// cuts the uplink when asked (real datagrams stop), and clears it on its
// own once the harness stops renewing the run's Lease (they flow again);
// then it refuses to impair until the Lease is renewed.
func TestAgentActsOnlyWithinALiveRun(t *testing.T) {
	star := traffic.StarT(t, 2)
	ctx := context.Background()
	r := liveRun(t, map[string]string{agent.NodesKey: "other-node"})
	cs, ns, l, dir, stopRenewing := r.cs, r.ns, r.ledger, r.dir, r.stopRenewing
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sh := r.shaper("test")
	r.agent(sh, shaper.Link{Netns: star.Hosts[0], Name: "eth0"})
	call := r.call
	flows := func() int {
		t.Helper()
		got, err := traffic.UDPTrain(ctx, star.Hosts[1], star.Hosts[0], star.Addr(0)+":9911", 50, 200, 500)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cut := shaper.Impairment{Outage: true}
	time.Sleep(500 * time.Millisecond) // a poll or two: the lease is seen live

	if code, body := call("PUT", "/v1/impairments/uplink", "", cut); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/uplink", token+"x", cut); code != http.StatusUnauthorized {
		t.Errorf("with another token: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/uplink", token, cut); code != http.StatusForbidden || !strings.Contains(body, "not in the run's ConfigMap") {
		t.Errorf("a node the run does not name: %d %s", code, body)
	}
	cm.Data[agent.NodesKey] = "other-node,lab-1"
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if code, body := call("PUT", "/v1/impairments/uplink", token, map[string]any{"outage": true, "speed": 1}); code != http.StatusBadRequest {
		t.Errorf("an unknown field: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/uplink", token, cut); code != http.StatusOK {
		t.Fatalf("the cut: %d %s", code, body)
	}
	if got := flows(); got != 0 {
		t.Errorf("%d of 50 datagrams crossed the cut uplink", got)
	}

	// The agent crashes and a new one starts (a new process: its own
	// shaper, the same state): it clears what the first one left.
	sh2, err := shaper.New(shaper.WithLedger(l, "test"), shaper.WithStateDir(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := agent.New(agent.Config{Node: "lab-1", Token: token, Client: cs, Namespace: ns,
		Uplink: shaper.Link{Netns: star.Hosts[0], Name: "eth0"}, Shaper: sh2, Poll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- a2.Run(ctx2) }()
	kubetest.Eventually(t, 5*time.Second, "a restarted agent to clear what the one before it left", func() bool { return flows() >= 45 })
	stop2()
	if err := <-done2; err != nil {
		t.Errorf("the second agent: %v", err)
	}
	sh2.Close()
	if code, body := call("PUT", "/v1/impairments/uplink", token, cut); code != http.StatusOK {
		t.Fatalf("the cut again: %d %s", code, body)
	}
	if got := flows(); got != 0 {
		t.Errorf("%d of 50 datagrams crossed the uplink cut again", got)
	}

	// The harness dies: nothing renews the lease (2 s).
	stopRenewing()
	cleared := time.Now()
	// The lease's 2 s, a poll, and room for a loaded machine.
	kubetest.Eventually(t, 8*time.Second, "the agent to clear the cut after its lease ran out", func() bool {
		_, body := call("GET", "/v1/impairments", token, nil)
		var st agent.State
		return json.Unmarshal([]byte(body), &st) == nil && st.Uplink == nil && st.Expired == 1
	})
	t.Logf("cleared %v after the last renewal", time.Since(cleared).Round(10*time.Millisecond))
	if got := flows(); got < 45 {
		t.Errorf("only %d of 50 datagrams crossed the uplink after the agent cleared it", got)
	}
	if _, ok, err := sh.Current(shaper.Target{Link: shaper.Link{Netns: star.Hosts[0], Name: "eth0"}}); ok || err != nil {
		t.Errorf("the shaper still holds an impairment on the uplink (%v)", err)
	}
	if code, body := call("PUT", "/v1/impairments/uplink", token, cut); code != http.StatusConflict || !strings.Contains(body, "no live run") {
		t.Errorf("an impairment with the lease run out: %d %s", code, body)
	}
}

// A pod, as the agent finds it from the node's namespace: host 0 of the
// star plays a pod behind the node's bridge (flannel's cni0 has this
// shape; a routed CNI's veth is found by its route, as the kind suite
// shows). The agent refuses a pod the run does not name and targets on a
// pod, holds the pod's download to its rate on the host side of its veth
// while its upload stays free, cuts it both ways, and clears it when the
// run's Lease lapses.
func TestAgentShapesAPodFromTheNode(t *testing.T) {
	star := traffic.StarT(t, 2)
	if out, err := exec.Command("ip", "-n", star.Fabric, "addr", "add", "10.199.0.254/24", "dev", "br0").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ctx := context.Background()
	r := liveRun(t, map[string]string{agent.NodesKey: "lab-1", agent.PodsKey: "shop/till-0=" + star.Addr(0) + ",bad entry"})
	cs, ns, stopRenewing := r.cs, r.ns, r.stopRenewing
	r.agent(r.shaper("test"), shaper.Link{Netns: star.Fabric, Name: "lo"})
	call := func(method, path string, body any) (int, string) {
		t.Helper()
		return r.call(method, path, token, body)
	}
	// The node has never talked to the pod: the agent makes it resolve
	// the pod's MAC to find its bridge port.
	time.Sleep(500 * time.Millisecond) // the lease seen live
	if code, body := call("PUT", "/v1/impairments/pods/shop/till-1", shaper.Impairment{Outage: true}); code != http.StatusForbidden || !strings.Contains(body, "not in the run's ConfigMap") {
		t.Errorf("a pod the run does not name: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/Till_0", shaper.Impairment{Outage: true}); code != http.StatusBadRequest {
		t.Errorf("a pod name that is not one: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/till-0", map[string]any{"outage": true, "targets": []string{"10.0.0.0/8"}}); code != http.StatusBadRequest || !strings.Contains(body, "targets are for the uplink") {
		t.Errorf("targets on a pod: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/till-0", shaper.Impairment{DownRate: 2 * shaper.Mbit}); code != http.StatusOK {
		t.Fatalf("the pod's download rate: %d %s", code, body)
	}
	down, err := traffic.TCPThroughput(ctx, star.Hosts[1], star.Hosts[0], star.Addr(0)+":0", time.Second, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	up, err := traffic.TCPThroughput(ctx, star.Hosts[0], star.Hosts[1], star.Addr(1)+":0", 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod with downRate 2mbit: down %.2f Mbit/s, up %.1f Mbit/s", down.Goodput()/1e6, up.Goodput()/1e6)
	if down.Goodput() < 1.5e6 || down.Goodput() > 2.3e6 {
		t.Errorf("the pod downloads at %.2f Mbit/s, want ~2", down.Goodput()/1e6)
	}
	if up.Goodput() < 20e6 {
		t.Errorf("the pod uploads at %.2f Mbit/s, want unshaped", up.Goodput()/1e6)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/till-0", shaper.Impairment{Outage: true}); code != http.StatusOK {
		t.Fatalf("the pod's outage: %d %s", code, body)
	}
	for _, d := range []struct{ from, to int }{{1, 0}, {0, 1}} {
		got, err := traffic.UDPTrain(ctx, star.Hosts[d.from], star.Hosts[d.to], star.Addr(d.to)+":9914", 50, 200, 500)
		if err != nil {
			t.Fatal(err)
		}
		if got != 0 {
			t.Errorf("%d of 50 datagrams from host %d to host %d crossed the pod's outage", got, d.from, d.to)
		}
	}
	_, body := call("GET", "/v1/impairments", nil)
	var st agent.State
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Pods["shop/till-0"] == nil || !st.Pods["shop/till-0"].Outage {
		t.Errorf("the state does not show the pod's outage: %s", body)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/till-0?ip=10.9.9.9", shaper.Impairment{Outage: true}); code != http.StatusPreconditionFailed {
		t.Errorf("a pod asked for at another address than the ConfigMap's: %d %s", code, body)
	}

	// A routed pod (kindnet's, Calico's shape): its own veth carries a
	// host route to it. One behind a route to a whole range is refused.
	sh2 := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	sh2("-n", star.Fabric, "link", "add", "rv0", "type", "veth", "peer", "name", "eth1", "netns", star.Hosts[1])
	sh2("-n", star.Hosts[1], "addr", "add", "10.198.0.2/32", "dev", "eth1")
	sh2("-n", star.Hosts[1], "link", "set", "eth1", "up")
	sh2("-n", star.Fabric, "link", "set", "rv0", "up")
	sh2("-n", star.Fabric, "route", "add", "10.198.0.2/32", "dev", "rv0")
	sh2("-n", star.Fabric, "route", "add", "10.198.1.0/24", "dev", "rv0")
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, agent.RunObject, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[agent.PodsKey] += ",shop/routed-0=10.198.0.2,shop/shared-0=10.198.1.5"
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 5*time.Second, "the routed pod shaped on its own veth", func() bool {
		code, _ := call("PUT", "/v1/impairments/pods/shop/routed-0?ip=10.198.0.2", shaper.Impairment{DownRate: 1 * shaper.Mbit, UpRate: 1 * shaper.Mbit})
		return code == http.StatusOK
	})
	if out, _ := exec.Command("tc", "-n", star.Fabric, "qdisc", "show", "dev", "rv0").CombinedOutput(); !strings.Contains(string(out), "tbf") && !strings.Contains(string(out), "htb") {
		t.Errorf("no rate limit on the routed pod's veth rv0:\n%s", out)
	}
	if code, body := call("PUT", "/v1/impairments/pods/shop/shared-0?ip=10.198.1.5", shaper.Impairment{Outage: true}); code != http.StatusNotFound || !strings.Contains(body, "no host route") {
		t.Errorf("a pod behind a link shared by a range: %d %s", code, body)
	}
	// The routed pod goes while shaped (its veth with it): at the lapse
	// the agent removes what the shaper put beside the veth (the ifb of
	// its upload, the nftables tables naming it).
	sh2("-n", star.Fabric, "link", "del", "rv0")
	stopRenewing()
	kubetest.Eventually(t, 8*time.Second, "the agent to clear the pods after its lease ran out", func() bool {
		_, body := call("GET", "/v1/impairments", nil)
		var st agent.State
		return json.Unmarshal([]byte(body), &st) == nil && len(st.Pods) == 0 && st.Expired == 2
	})
	if out, _ := exec.Command("ip", "-n", star.Fabric, "-br", "link").CombinedOutput(); strings.Contains(string(out), "efb") {
		t.Errorf("an ifb of the gone pod's veth remains:\n%s", out)
	}
	fab, err := netns.GetFromName(star.Fabric)
	if err != nil {
		t.Fatal(err)
	}
	defer fab.Close()
	nc, err := nftables.New(nftables.WithNetNSFd(int(fab)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := nc.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, "edgefault-") {
			t.Errorf("nftables table %s of a pod remains", tb.Name)
		}
	}
	if got, err := traffic.UDPTrain(ctx, star.Hosts[1], star.Hosts[0], star.Addr(0)+":9915", 50, 200, 500); err != nil || got < 45 {
		t.Errorf("after the lapse %d of 50 datagrams reached the pod (%v)", got, err)
	}
}

const token = "0123456789abcdef0123"

// run is a live run on a real API server: the harness's namespace, the
// run's ConfigMap (data as given) and its Lease (2 s), renewed every
// 500 ms until stopRenewing; agents made by agent poll every 200 ms and
// serve over httptest, reached with call.
type run struct {
	t            *testing.T
	cs           kubernetes.Interface
	ns, dir      string
	ledger       *ledger.Ledger
	stopRenewing context.CancelFunc
	url          string
	// files is the run's directory the agents serve.
	files string
}

func liveRun(t *testing.T, data map[string]string) *run {
	t.Helper()
	cp := kubetest.ControlPlane(t, "lab", false)
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	const ns = "edgefault"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: agent.RunObject}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	lease, err := cs.CoordinationV1().Leases(ns).Create(ctx, &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: agent.RunObject},
		Spec: coordv1.LeaseSpec{LeaseDurationSeconds: &two, RenewTime: &metav1.MicroTime{Time: time.Now()}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	renewing, stopRenewing := context.WithCancel(ctx)
	go func() {
		for renewing.Err() == nil {
			time.Sleep(500 * time.Millisecond)
			lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			if got, err := cs.CoordinationV1().Leases(ns).Update(renewing, lease, metav1.UpdateOptions{}); err == nil {
				lease = got
			}
		}
	}()
	return &run{t: t, cs: cs, ns: ns, dir: dir, ledger: l, stopRenewing: stopRenewing, files: filepath.Join(dir, "files", "run-1")}
}

// shaper is a shaper of the run's ledger under owner.
func (r *run) shaper(owner string) *shaper.Shaper {
	r.t.Helper()
	sh, err := shaper.New(shaper.WithLedger(r.ledger, owner), shaper.WithStateDir(filepath.Join(r.dir, "state")))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(sh.Close)
	return sh
}

// agent starts an agent of node lab-1 on uplink; the first one serves
// call's requests.
func (r *run) agent(sh *shaper.Shaper, uplink shaper.Link) *agent.Agent {
	r.t.Helper()
	a, err := agent.New(agent.Config{Node: "lab-1", Token: token, Client: r.cs, Namespace: r.ns, Uplink: uplink, Shaper: sh, Files: r.files, Poll: 200 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	go func() { _ = a.Run(ctx) }()
	if r.url == "" {
		srv := httptest.NewServer(a.Handler())
		r.t.Cleanup(srv.Close)
		r.url = srv.URL
	}
	return a
}

// call sends a request with token tok ("" for none) and body as JSON.
func (r *run) call(method, path, tok string, body any) (int, string) {
	r.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, r.url+path, bytes.NewReader(b))
	if tok != "" {
		req.Header.Set(agent.TokenHeader, tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}
