package existing

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/runtime/agent"
	"github.com/edgefault/edgefault/shaper/impair"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// Agents calls a run's node agents through the API server's pod proxy,
// with the run's token: the harness needs no route to the nodes, only
// the API server and the right to proxy to pods in Namespace.
type Agents struct {
	cs    kubernetes.Interface
	token string

	mu   sync.Mutex
	pods map[string]string // node → its agent's pod
}

// NewAgents returns a client of the agents of the run whose token is
// token.
func NewAgents(cs kubernetes.Interface, token string) *Agents {
	return &Agents{cs: cs, token: token, pods: map[string]string{}}
}

// ErrNotLive is what an agent answers while it has not seen the run's
// Lease renewed (yet, or any more).
var ErrNotLive = errors.New("the agent sees no live run")

// ErrNotNamed is what an agent answers for a node or pod the run's
// ConfigMap does not name (or not yet at the address asked for).
var ErrNotNamed = errors.New("the run does not name it")

// pod is the running agent pod on node.
func (a *Agents) pod(ctx context.Context, node string, fresh bool) (string, error) {
	a.mu.Lock()
	p, ok := a.pods[node]
	a.mu.Unlock()
	if ok && !fresh {
		return p, nil
	}
	list, err := a.cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: agentSelector, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return "", fmt.Errorf("the agent on node %s: %w", node, err)
	}
	for _, it := range list.Items {
		if it.Status.Phase == corev1.PodRunning && it.DeletionTimestamp == nil {
			a.mu.Lock()
			a.pods[node] = it.Name
			a.mu.Unlock()
			return it.Name, nil
		}
	}
	return "", fmt.Errorf("no agent is running on node %s yet (DaemonSet %s/%s: is the runtime's image on the node, and the node labelled %s?)", node, Namespace, AgentName, "edgefault.io/role")
}

// call sends one request to node's agent and decodes its State; query
// goes as the request's parameters (the pod proxy passes them on).
func (a *Agents) call(ctx context.Context, node, method, path string, body any, query ...string) (agent.State, error) {
	var st agent.State
	raw, err := a.do(ctx, node, method, path, body, query...)
	var ae *agentError
	switch {
	case errors.As(err, &ae) && ae.agent && (ae.code == http.StatusPreconditionFailed || ae.code == http.StatusForbidden):
		return st, fmt.Errorf("node %s: %w: %s", node, ErrNotNamed, ae.msg)
	case errors.As(err, &ae) && ae.agent && ae.code == http.StatusConflict:
		return st, fmt.Errorf("node %s: %w: %s", node, ErrNotLive, ae.msg)
	case err != nil:
		return st, err
	}
	return st, json.Unmarshal(raw, &st)
}

// agentError is an agent's answer other than 200, or the API server's
// (agent false: its own refusal, RBAC's say, means nothing of the run).
type agentError struct {
	node  string
	code  int
	msg   string
	agent bool
}

func (e *agentError) Error() string {
	return fmt.Sprintf("node %s's agent: %s (HTTP %d)", e.node, e.msg, e.code)
}

// request is one request to node's agent pod p through the pod proxy.
func (a *Agents) request(method, p, path string, timeout time.Duration, query ...string) *rest.Request {
	req := a.cs.CoreV1().RESTClient().Verb(method).Namespace(Namespace).Resource("pods").
		Name(fmt.Sprintf("%s:%d", p, AgentPort)).SubResource("proxy").Suffix(path).
		SetHeader(agent.TokenHeader, a.token).Timeout(timeout)
	for i := 0; i+1 < len(query); i += 2 {
		req = req.Param(query[i], query[i+1])
	}
	return req
}

// do sends one request to node's agent and returns its answer's body (an
// *agentError for any answer but 200).
func (a *Agents) do(ctx context.Context, node, method, path string, body any, query ...string) ([]byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		p, err := a.pod(ctx, node, attempt > 0)
		if err != nil {
			return nil, err
		}
		req := a.request(method, p, path, 45*time.Second, query...)
		if payload != nil {
			req = req.SetHeader("Content-Type", "application/json").Body(payload)
		}
		res := req.Do(ctx)
		var code int
		res.StatusCode(&code)
		raw, rerr := res.Raw()
		if code == http.StatusOK {
			return raw, nil
		}
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		switch {
		case e.Error == "" && attempt == 0:
			continue // not the agent's answer: its pod may have been replaced
		case e.Error != "":
			return nil, &agentError{node: node, code: code, msg: e.Error, agent: true}
		}
		return nil, &agentError{node: node, code: code, msg: fmt.Sprintf("through the API server: %v", rerr)}
	}
}

// Evidence reads the run's evidence files on node, each handed to each
// as it arrives (a tar stream: nothing is held whole in memory). A file
// each refuses is skipped and the others still read; the errors are
// returned together.
func (a *Agents) Evidence(ctx context.Context, node string, each func(name string, r io.Reader) error) error {
	p, err := a.pod(ctx, node, false)
	if err != nil {
		return err
	}
	rc, err := a.request("GET", p, "v1/evidence", 10*time.Minute).Stream(ctx)
	if err != nil {
		return fmt.Errorf("node %s's evidence: %w", node, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var errs []error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return errors.Join(errs...)
		}
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("node %s's evidence, cut short: %w", node, err))...)
		}
		if err := each(h.Name, tr); err != nil {
			errs = append(errs, err)
		}
	}
}

// RemoveFiles removes the run's directory on node (evidence and data).
func (a *Agents) RemoveFiles(ctx context.Context, node string) error {
	_, err := a.do(ctx, node, "DELETE", "v1/evidence", nil)
	return err
}

// ErrGone is what an agent answers for a workload pod with no process
// left to signal (it ended meanwhile).
var ErrGone = errors.New("no process of it is left")

// Signal sends sig (SIGKILL: a crash; SIGTERM: a stop) to the processes
// of the harness's pod name on node, through its agent.
func (a *Agents) Signal(ctx context.Context, node, name string, sig syscall.Signal) (agent.Killed, error) {
	var k agent.Killed
	s := "KILL"
	switch sig {
	case syscall.SIGKILL:
	case syscall.SIGTERM:
		s = "TERM"
	default:
		return k, fmt.Errorf("pod %s: %v: only KILL and TERM", name, sig)
	}
	raw, err := a.do(ctx, node, "POST", "v1/kill/"+name, nil, "signal", s)
	var ae *agentError
	if errors.As(err, &ae) && ae.agent && ae.code == http.StatusGone {
		return k, fmt.Errorf("pod %s: %w: %s", name, ErrGone, ae.msg)
	}
	if err != nil {
		return k, err
	}
	return k, json.Unmarshal(raw, &k)
}

// State is node's agent's state.
func (a *Agents) State(ctx context.Context, node string) (agent.State, error) {
	return a.call(ctx, node, "GET", "v1/impairments", nil)
}

// Apply impairs node's uplink.
func (a *Agents) Apply(ctx context.Context, node string, imp impair.Impairment) error {
	_, err := a.call(ctx, node, "PUT", "v1/impairments/uplink", imp)
	return err
}

// Clear clears node's uplink.
func (a *Agents) Clear(ctx context.Context, node string) error {
	_, err := a.call(ctx, node, "DELETE", "v1/impairments/uplink", nil)
	return err
}

// ApplyPod impairs pod (NAMESPACE/NAME) at ip on node, as the pod sees
// its traffic; the run's ConfigMap must name it there (AllowPods), or the
// agent answers ErrNotNamed (retry once it has read the ConfigMap).
func (a *Agents) ApplyPod(ctx context.Context, node, pod, ip string, imp impair.Impairment) error {
	if err := agent.ValidPod(pod); err != nil {
		return err
	}
	if len(imp.Targets) > 0 {
		return fmt.Errorf("pod %s: a pod's impairment applies to all its traffic: targets are for a node's link", pod)
	}
	_, err := a.call(ctx, node, "PUT", "v1/impairments/pods/"+pod, imp, "ip", ip)
	return err
}

// ClearPod clears pod on node.
func (a *Agents) ClearPod(ctx context.Context, node, pod string) error {
	if err := agent.ValidPod(pod); err != nil {
		return err
	}
	_, err := a.call(ctx, node, "DELETE", "v1/impairments/pods/"+pod, nil)
	return err
}

// WaitLive waits until the agent on each node runs and sees the run live
// and itself named, up to within.
func (a *Agents) WaitLive(ctx context.Context, nodes []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, n := range nodes {
		for {
			st, err := a.State(ctx, n)
			if err == nil && st.Live && st.Allowed {
				break
			}
			if err == nil {
				err = fmt.Errorf("node %s's agent sees the run live=%v, itself named=%v", n, st.Live, st.Allowed)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the agents did not come up within %v: %w", within, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// PodRef is a pod the run may impair, as the run's ConfigMap names it.
type PodRef struct {
	// Key is NAMESPACE/NAME.
	Key  string
	Node string
	IP   string
}

// LookupPod reads pod (NAMESPACE/NAME) from the API: its node and
// address. A pod on the host network has no veth of its own: refused.
func LookupPod(ctx context.Context, cs kubernetes.Interface, pod string) (PodRef, error) {
	if err := agent.ValidPod(pod); err != nil {
		return PodRef{}, err
	}
	ns, name, _ := strings.Cut(pod, "/")
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return PodRef{}, fmt.Errorf("pod %s: %w", pod, err)
	}
	switch {
	case p.Spec.HostNetwork:
		return PodRef{}, fmt.Errorf("pod %s is on its node's network: it has no link of its own; impair its node instead", pod)
	case p.Spec.NodeName == "" || p.Status.PodIP == "":
		return PodRef{}, fmt.Errorf("pod %s is not running on a node yet (phase %s)", pod, p.Status.Phase)
	}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			return PodRef{Key: pod, Node: p.Spec.NodeName, IP: a.String()}, nil
		}
	}
	return PodRef{}, fmt.Errorf("pod %s has no IPv4 address (%s): the agent shapes IPv4 pods only", pod, p.Status.PodIP)
}

// AllowPods names pods in the run's ConfigMap, so their nodes' agents
// may impair them: added to those it names (another shaper's stay), or
// moved to a new address. Concurrent changes are retried.
func AllowPods(ctx context.Context, cs kubernetes.Interface, pods ...PodRef) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, agent.RunObject, metav1.GetOptions{})
		if err != nil {
			return err
		}
		have := map[string]string{}
		for _, e := range strings.Split(cm.Data[agent.PodsKey], ",") {
			if k, ip, ok := strings.Cut(strings.TrimSpace(e), "="); ok {
				have[k] = ip
			}
		}
		for _, p := range pods {
			have[p.Key] = p.IP
		}
		vals := make([]string, 0, len(have))
		for k, ip := range have {
			vals = append(vals, k+"="+ip)
		}
		sort.Strings(vals)
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[agent.PodsKey] = strings.Join(vals, ",")
		_, err = cs.CoreV1().ConfigMaps(Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("name the pods in the run's ConfigMap: %w", err)
	}
	return nil
}
