// Package controlplane runs a real Kubernetes control plane: etcd and
// kube-apiserver processes, built by `edgefault setup` (package k8sbin),
// with their own certificate authority, recorded in the ledger so that
// `edgefault cleanup` stops them after any crash.
//
// This is the first part of a site's own cluster: the processes run on this
// machine's loopback for now; placing them on the site's LAN, one per site
// with a shared etcd, and registering nodes come next.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters/k8sbin"
	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/ledger"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configures Start.
type Options struct {
	// Site names the cluster (and its etcd key prefix).
	Site string
	// Dir holds data, certificates and logs; Stop removes it.
	Dir string
	// Bin is the cache `edgefault setup` filled.
	Bin k8sbin.Cache
	// Ledger and Owner record the processes.
	Ledger *ledger.Ledger
	Owner  string
	Log    *slog.Logger
	// Workloads also starts kube-controller-manager, kube-scheduler and
	// kwok (which keeps Node objects Ready and runs the pods scheduled to
	// them), so Deployments and DaemonSets schedule and drains complete.
	Workloads bool
	// Nodes starts kwok alone: it keeps the Node objects Ready, which is
	// all tagging a Node and cordoning it need.
	Nodes bool
	// Lean trims memory: Go memory limits on every component, etcd keeps
	// a short raft log, the apiserver has no watch cache and fewer
	// requests in flight.
	Lean bool
	// Netns, when set, runs the control plane inside that network
	// namespace (a name or path), serving the API on Address there, so the
	// site's own nodes reach it over the site LAN and a cut uplink does not
	// touch it. The harness still reaches it by dialling from inside the
	// namespace (the management path).
	Netns   string
	Address string
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	Site string
	Dir  string
	// URL is the apiserver's address.
	URL string
	// Admin is a client configuration with cluster-admin rights.
	Admin *rest.Config
	procs []*proc
	o     Options
	ca    *PKI
}

func (cp *ControlPlane) pki() (*PKI, error) {
	if cp.ca == nil {
		return nil, fmt.Errorf("control plane of site %s has no CA (not started)", cp.Site)
	}
	return cp.ca, nil
}

type proc struct {
	name  string
	cmd   *exec.Cmd
	entry ledger.Entry
	done  chan struct{}
	err   error
}

// freePort picks a free loopback port (in the caller's namespace; a
// dedicated namespace uses the standard ports instead).
func freePort(ns string, std int) (int, error) {
	if ns != "" {
		return std, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dialer dials from inside ns ("" = here).
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsdo.DialContext(ns)
}

// Start starts etcd and kube-apiserver for a site and waits until the
// apiserver is ready. On failure everything started is stopped again.
func Start(ctx context.Context, o Options) (cp *ControlPlane, err error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	etcdBin, err := o.Bin.Lookup("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := o.Bin.Lookup("kube-apiserver")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	started := &ControlPlane{Site: o.Site, Dir: o.Dir, o: o}
	cp = started
	defer func() {
		// Not cp: a failing return has set it to nil.
		if err != nil {
			_ = started.Stop()
		}
	}()
	if err := o.Ledger.Record(o.Owner, ledger.Entry{Kind: ledger.KindState, Name: o.Dir}); err != nil {
		return nil, err
	}
	pki, err := NewPKI(filepath.Join(o.Dir, "pki"), o.Site)
	if err != nil {
		return nil, err
	}
	cp.ca = pki
	addr := "127.0.0.1"
	if o.Address != "" {
		addr = o.Address
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
	if ip := net.ParseIP(addr); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	servingCert, servingKey, err := pki.Issue("apiserver", "kube-apiserver", nil, ips,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return nil, err
	}
	adminCert, adminKey, err := pki.Issue("admin", "edgefault-admin", []string{"system:masters"}, nil, nil)
	if err != nil {
		return nil, err
	}
	saPub, saKey, err := pki.ServiceAccountKey()
	if err != nil {
		return nil, err
	}
	clientPort, err := freePort(o.Netns, 2379)
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort(o.Netns, 2380)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdArgs := []string{"--name", "default", "--data-dir", filepath.Join(o.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default=" + peerURL, "--log-level", "warn"}
	if o.Lean {
		// The raft log is kept in memory up to a snapshot: 100 000
		// entries by default.
		etcdArgs = append(etcdArgs, "--snapshot-count=2000")
	}
	if err := cp.start(ctx, "etcd", etcdBin, etcdArgs...); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, cp.procs[0], o.Netns, etcdURL+"/health", 30*time.Second); err != nil {
		return nil, fmt.Errorf("etcd did not become healthy: %w (log %s ends: %s)", err, cp.logPath("etcd"), cp.LogTail("etcd"))
	}
	apiPort, err := freePort(o.Netns, 6443)
	if err != nil {
		return nil, err
	}
	cp.URL = fmt.Sprintf("https://%s:%d", addr, apiPort)
	var lean []string
	if o.Lean {
		lean = []string{"--watch-cache=false", "--profiling=false", "--max-requests-inflight=100", "--max-mutating-requests-inflight=50"}
		if !o.Workloads {
			// Nothing collects garbage without the controller manager.
			lean = append(lean, "--enable-garbage-collector=false")
		}
	}
	if err := cp.start(ctx, "kube-apiserver", apiBin, append(lean,
		"--etcd-servers", etcdURL, "--etcd-prefix", "/registry/"+o.Site,
		"--bind-address", addr, "--advertise-address", addr, "--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", servingCert, "--tls-private-key-file", servingKey,
		"--client-ca-file", pki.CAFile(),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey, "--service-cluster-ip-range", "10.96.0.0/16",
		"--authorization-mode", "Node,RBAC",
		// A hand-started apiserver advertising 127.0.0.1 must not manage
		// the kubernetes Service endpoints.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
		"--cert-dir", filepath.Join(o.Dir, "certs"))...); err != nil {
		return nil, err
	}
	cp.Admin = &rest.Config{Host: cp.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: pki.CAFile(), CertFile: adminCert, KeyFile: adminKey}, Timeout: 10 * time.Second}
	if o.Netns != "" {
		cp.Admin.Dial = dialer(o.Netns)
	}
	if err := cp.waitReady(ctx, 90*time.Second); err != nil {
		return nil, fmt.Errorf("kube-apiserver did not become ready: %w (log %s ends: %s)", err, cp.logPath("kube-apiserver"), cp.LogTail("kube-apiserver"))
	}
	if o.Workloads || o.Nodes {
		if err := cp.startWorkloads(ctx, saKey); err != nil {
			return nil, err
		}
	}
	o.Log.Info("control plane ready", "site", o.Site, "apiserver", cp.URL)
	return cp, nil
}

// Components names the processes the control plane runs, in start order.
func (cp *ControlPlane) Components() []string {
	var out []string
	for _, p := range cp.procs {
		out = append(out, p.name)
	}
	return out
}

// LogTail is the last lines of a component's log, on one line: the
// error that stopped it is usually there, and Stop removes the log.
func (cp *ControlPlane) LogTail(name string) string {
	b, _ := os.ReadFile(cp.logPath(name))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

func (cp *ControlPlane) logPath(name string) string { return filepath.Join(cp.Dir, name+".log") }

func (cp *ControlPlane) start(ctx context.Context, name, bin string, args ...string) error {
	lf, err := os.OpenFile(cp.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if cp.o.Lean {
		// A soft limit: the collector works harder near it rather than
		// the heap growing to twice the live data.
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimits[name])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var start func(*exec.Cmd) error
	if cp.o.Netns != "" {
		ns := cp.o.Netns
		start = func(c *exec.Cmd) error { return nsdo.Do(ns, c.Start) }
	}
	e, err := cp.o.Ledger.Start(cp.o.Owner, fmt.Sprintf("%s of site %s", name, cp.Site), cmd, true, start)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, entry: e, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	cp.procs = append(cp.procs, p)
	return nil
}

func waitHTTP(ctx context.Context, p *proc, ns, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dialer(ns)}}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if r, err := c.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %v", url, within)
}

func (cp *ControlPlane) waitReady(ctx context.Context, within time.Duration) error {
	cs, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-cp.procs[len(cp.procs)-1].done:
			return fmt.Errorf("kube-apiserver exited: %v", cp.procs[len(cp.procs)-1].err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v: %v", within, last)
}

// Client returns a clientset with cluster-admin rights.
func (cp *ControlPlane) Client() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.Admin)
}

// WriteKubeconfig writes a kubeconfig for the admin user that kubectl can
// use.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cp.Site] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthority: cp.Admin.CAFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: cp.Admin.CertFile, ClientKey: cp.Admin.KeyFile}
	cfg.Contexts[cp.Site] = &clientcmdapi.Context{Cluster: cp.Site, AuthInfo: "admin"}
	cfg.CurrentContext = cp.Site
	return clientcmd.WriteToFile(*cfg, path)
}

// Stop stops the processes (apiserver first) and removes the directory.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		if err := ledger.StopProcess(p.entry, 10*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		<-p.done
		if err := cp.o.Ledger.Forget(cp.o.Owner, p.entry); err != nil {
			errs = append(errs, err)
		}
	}
	cp.procs = nil
	if len(errs) == 0 {
		if err := os.RemoveAll(cp.Dir); err != nil {
			errs = append(errs, err)
		} else if err := cp.o.Ledger.Forget(cp.o.Owner, ledger.Entry{Kind: ledger.KindState, Name: cp.Dir}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// memLimits are the lean components' GOMEMLIMIT: about what each needs
// live for a site of a few Nodes, with room.
var memLimits = map[string]string{
	"etcd": "48MiB", "kube-apiserver": "160MiB", "kwok": "40MiB",
	"kube-controller-manager": "64MiB", "kube-scheduler": "40MiB",
}

// startWorkloads starts the controller manager, the scheduler and kwok
// (kwok alone with Nodes), each with the admin identity.
func (cp *ControlPlane) startWorkloads(ctx context.Context, saKey string) error {
	kc := filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := cp.WriteKubeconfig(kc); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{"--kubeconfig", kc, "--leader-elect=false",
			"--service-account-private-key-file", saKey, "--root-ca-file", cp.Admin.CAFile,
			"--use-service-account-credentials=false",
			// No pod network here: kwok gives pods their addresses.
			"--controllers", "*,-nodeipam",
			// Nothing to serve: several control planes share a namespace
			// (the host's) in tests.
			"--secure-port=0"}},
		{"kube-scheduler", []string{"--kubeconfig", kc, "--leader-elect=false", "--secure-port=0"}},
		{"kwok", []string{"--kubeconfig", kc, "--manage-all-nodes=true", "--cidr", "10.244.0.0/16", "--node-lease-duration-seconds", "40"}},
	} {
		if !cp.o.Workloads && c.name != "kwok" {
			continue
		}
		bin, err := cp.o.Bin.Lookup(c.name)
		if err != nil {
			return err
		}
		if err := cp.start(ctx, c.name, bin, c.args...); err != nil {
			return err
		}
	}
	return nil
}
