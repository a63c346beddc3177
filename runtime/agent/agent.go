// Package agent is edgeguard's node agent for clusters the harness did not
// make (k3s on devices, a lab, a cloud cluster): it runs on every node, on
// the host network, and applies or clears impairments on the node's uplink
// when the harness asks over an authenticated API, with the shaper the
// embedded fleet uses. It acts only while the run's Lease is being renewed
// and only on a node the run's ConfigMap names; once the Lease stops being
// renewed (the harness died, or the run ended without cleaning up) it
// clears everything it applied, so no impairment outlives its run.
//
// Expiry is judged on the agent's own clock: the Lease counts as renewed
// when its renew time changes, so a node whose clock is off does not
// expire a live run or keep a dead one.
package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/shaper"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RunObject is the name of the run's Lease and ConfigMap in the harness's
// namespace.
const RunObject = "edgefault-run"

// NodesKey is the ConfigMap's key listing, comma-separated, the nodes the
// run may impair.
const NodesKey = "nodes"

// Config configures an Agent.
type Config struct {
	// Node is the name of the node the agent runs on.
	Node string
	// Token is the token every request must carry in TokenHeader (from
	// the run's Secret).
	Token string
	// Client reads the run's Lease and ConfigMap in Namespace.
	Client    kubernetes.Interface
	Namespace string
	// Uplink is the node's link to impair ({Name: "eth0"} on the host
	// network).
	Uplink shaper.Link
	// Shaper applies and clears impairments.
	Shaper *shaper.Shaper
	// Files is the run's directory on the node, as the agent sees it:
	// the workloads' evidence and data (empty: none; GET /v1/evidence
	// answers 404).
	Files string
	// Poll is how often the Lease and ConfigMap are read (default 1 s).
	Poll time.Duration
	Log  *slog.Logger
}

// Agent serves the API and watches the run's Lease.
type Agent struct {
	cfg Config
	sem chan struct{} // bounds requests in progress

	// chg serializes changes to links (requests, clearing), held across
	// the shaper's work; mu guards the fields below and is never held
	// across it, so reads and the Lease's watch do not wait on a change.
	chg sync.Mutex
	mu  sync.Mutex
	// places are what the agent may have shaped: "uplink", and
	// "pod/NAMESPACE/NAME" for a pod's veth.
	places  map[string]*place
	live    bool                  // the Lease is being renewed
	allowed bool                  // the ConfigMap names this node
	pods    map[string]netip.Addr // the pods it names: NAMESPACE/NAME → IP
	renew   time.Time             // the Lease's renew time last seen
	dur     time.Duration         // and its duration
	changed time.Time             // when (on our clock) it last changed
	expired int                   // times the Lease ran out with something applied
	warned  string                // the ConfigMap version last warned of (check's alone)
}

// place is a link the agent shapes.
type place struct {
	target shaper.Target
	// applied is what was asked, as the place's owner sees it (a pod: up
	// is what it sends); nil if nothing.
	applied *shaper.Impairment
	// dirty: the link may hold shaping to clear (something applied, an
	// apply that failed half-way, or what an agent before this one left).
	dirty bool
	// ifindex is a pod's veth's index when shaped: a new veth of the same
	// name (a pod made again) has another.
	ifindex int
}

const uplinkKey = "uplink"

// New checks cfg and returns an Agent; Run must run for it to act.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Node == "":
		return nil, errors.New("agent: the node's name is required ($NODE_NAME from the downward API)")
	case len(cfg.Token) < 16:
		return nil, errors.New("agent: a token of at least 16 characters is required (mount the run's Secret)")
	case cfg.Client == nil || cfg.Namespace == "":
		return nil, errors.New("agent: a client and the harness's namespace are required")
	case cfg.Shaper == nil || cfg.Uplink.Name == "":
		return nil, errors.New("agent: a shaper and the node's uplink are required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	up := &place{target: shaper.Target{Link: cfg.Uplink}, dirty: true}
	return &Agent{cfg: cfg, sem: make(chan struct{}, 4), places: map[string]*place{uplinkKey: up}}, nil
}

// Run reads the Lease and ConfigMap every Poll until ctx ends, clearing
// what it applied once the Lease is no longer renewed; at the end it
// clears too. It starts by clearing what an agent before it may have left
// on the uplink (a crash, an OOM kill): no run is known to be live yet.
// (What it left on pods' veths is in the shaper's state, which the caller
// restores first: shaper.RestoreAll.)
func (a *Agent) Run(ctx context.Context) error {
	if err := a.clear(ctx, "the agent starts: what an agent before it may have left", nil); err != nil {
		a.cfg.Log.Error("clearing at start", "err", err)
	}
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	for {
		a.check(ctx)
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return a.clear(cctx, "the agent is stopping", nil)
		case <-t.C:
		}
	}
}

// check reads the Lease and ConfigMap once. What cannot be read (the API
// server slow or unreachable, the uplink impaired) keeps what was last
// seen: the Lease then runs out on our clock, as a dead harness's does,
// and no sooner.
func (a *Agent) check(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.Poll+2*time.Second)
	defer cancel()
	now := time.Now()
	a.mu.Lock()
	renew, dur, allowed, pods := a.renew, a.dur, a.allowed, a.pods
	a.mu.Unlock()
	l, err := a.cfg.Client.CoordinationV1().Leases(a.cfg.Namespace).Get(rctx, RunObject, metav1.GetOptions{})
	switch {
	case err == nil && l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil:
		renew, dur = l.Spec.RenewTime.Time, time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second
	case err == nil, apierrors.IsNotFound(err):
		renew, dur = time.Time{}, 0 // no lease, or one never renewed: no run
	case ctx.Err() != nil:
		return // stopping: Run clears
	default:
		a.cfg.Log.Warn("reading the run's lease (the last one seen still counts)", "err", err)
	}
	cm, err := a.cfg.Client.CoreV1().ConfigMaps(a.cfg.Namespace).Get(rctx, RunObject, metav1.GetOptions{})
	switch {
	case err == nil:
		allowed = slices.Contains(strings.Split(cm.Data[NodesKey], ","), a.cfg.Node)
		var bad []string
		if pods, bad = parsePods(cm.Data[PodsKey]); len(bad) > 0 && cm.ResourceVersion != a.warned {
			a.warned = cm.ResourceVersion // once per version, not per poll
			a.cfg.Log.Warn("the run's ConfigMap names pods the agent cannot read: want NAMESPACE/NAME=IPv4", "entries", bad)
		}
	case apierrors.IsNotFound(err):
		allowed, pods = false, nil
	case ctx.Err() != nil:
		return
	default:
		a.cfg.Log.Warn("reading the run's ConfigMap (the last one seen still counts)", "err", err)
	}
	a.mu.Lock()
	if renew.IsZero() {
		a.renew, a.dur = time.Time{}, 0
	} else if !renew.Equal(a.renew) {
		a.renew, a.changed, a.dur = renew, now, dur
	}
	live := !a.renew.IsZero() && now.Sub(a.changed) < a.dur
	a.live, a.allowed, a.pods = live, allowed, pods
	// What must go: everything once the run is over, else the uplink if
	// this node is no longer named and pods no longer named.
	var stale []string
	for k, p := range a.places {
		if !p.dirty {
			continue
		}
		_, named := pods[strings.TrimPrefix(k, "pod/")]
		if !live || (k == uplinkKey && !allowed) || (k != uplinkKey && !named) {
			stale = append(stale, k)
		}
	}
	a.mu.Unlock()
	if len(stale) > 0 {
		why := "the run's lease was not renewed"
		if live {
			why = "the run's ConfigMap no longer names it"
		}
		if err := a.clear(ctx, why, stale); err != nil {
			a.cfg.Log.Error("clearing after the run", "err", err)
		}
	}
}

// clear removes what the agent applied, or may have (dirty), on the
// places named (nil: all). A pod's veth that is gone went with its pod:
// what the shaper put beside it goes too (shaper.Forget).
func (a *Agent) clear(ctx context.Context, why string, keys []string) error {
	a.chg.Lock()
	defer a.chg.Unlock()
	a.mu.Lock()
	if keys == nil {
		keys = slices.Collect(maps.Keys(a.places))
	}
	type job struct {
		key string
		p   *place
	}
	var jobs []job
	for _, k := range keys {
		if p := a.places[k]; p != nil && p.dirty {
			jobs = append(jobs, job{k, p})
		}
	}
	a.mu.Unlock()
	var errs []error
	for _, j := range jobs {
		var err error
		if j.key == uplinkKey {
			err = a.cfg.Shaper.Clear(ctx, j.p.target)
		} else {
			err = a.cfg.Shaper.Forget(ctx, j.p.target)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("clear %s (%s): %w", j.key, j.p.target.Link, err))
			continue
		}
		a.mu.Lock()
		was := "whatever was there"
		if j.p.applied != nil {
			was = j.p.applied.String()
			if !a.live {
				a.expired++
			}
		}
		j.p.applied, j.p.dirty = nil, false
		if j.key != uplinkKey && a.places[j.key] == j.p {
			delete(a.places, j.key)
		}
		a.mu.Unlock()
		a.cfg.Log.Info("cleared", "place", j.key, "link", j.p.target.Link.String(), "why", why, "was", was)
	}
	return errors.Join(errs...)
}

// State is what GET /v1/impairments answers.
type State struct {
	Node    string             `json:"node"`
	Live    bool               `json:"live"`
	Allowed bool               `json:"allowed"`
	Uplink  *shaper.Impairment `json:"uplink,omitempty"`
	// Pods are the impairments on pods' veths (NAMESPACE/NAME), as the
	// pods see them.
	Pods    map[string]*shaper.Impairment `json:"pods,omitempty"`
	Expired int                           `json:"expired"`
}

// state is the State; a.mu held.
func (a *Agent) state() State {
	st := State{Node: a.cfg.Node, Live: a.live, Allowed: a.allowed, Uplink: a.places[uplinkKey].applied, Expired: a.expired}
	for k, p := range a.places {
		if k != uplinkKey && p.applied != nil {
			if st.Pods == nil {
				st.Pods = map[string]*shaper.Impairment{}
			}
			st.Pods[strings.TrimPrefix(k, "pod/")] = p.applied
		}
	}
	return st
}

// Handler is the agent's API: GET /v1/impairments (the state); PUT (an
// impairment as JSON) and DELETE /v1/impairments/uplink, and the same on
// /v1/impairments/pods/NAMESPACE/NAME for a pod on this node, impaired as
// it sees its traffic on the host side of its veth. Every request needs
// the run's token; a change needs a live Lease and this node (or the pod)
// in the ConfigMap. GET and DELETE /v1/evidence and POST /v1/kill/NAME
// serve the run's workloads (workloads.go).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/impairments", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		st := a.state()
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, st)
	})
	put := func(w http.ResponseWriter, r *http.Request) (*shaper.Impairment, bool) {
		var imp shaper.Impairment
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&imp); err != nil {
			writeErr(w, http.StatusBadRequest, "the impairment: %v", err)
			return nil, false
		}
		if err := imp.Validate(); err != nil {
			writeErr(w, http.StatusBadRequest, "the impairment: %v", err)
			return nil, false
		}
		return &imp, true
	}
	mux.HandleFunc("PUT /v1/impairments/uplink", func(w http.ResponseWriter, r *http.Request) {
		if imp, ok := put(w, r); ok {
			a.change(w, r, uplinkKey, imp)
		}
	})
	mux.HandleFunc("DELETE /v1/impairments/uplink", func(w http.ResponseWriter, r *http.Request) {
		a.change(w, r, uplinkKey, nil)
	})
	pod := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		key := r.PathValue("namespace") + "/" + r.PathValue("name")
		if err := ValidPod(key); err != nil {
			writeErr(w, http.StatusBadRequest, "%v", err)
			return "", false
		}
		return "pod/" + key, true
	}
	mux.HandleFunc("PUT /v1/impairments/pods/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		k, ok := pod(w, r)
		if !ok {
			return
		}
		if imp, ok := put(w, r); ok {
			a.change(w, r, k, imp)
		}
	})
	mux.HandleFunc("DELETE /v1/impairments/pods/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if k, ok := pod(w, r); ok {
			a.change(w, r, k, nil)
		}
	})
	mux.HandleFunc("GET /v1/evidence", a.evidence)
	mux.HandleFunc("DELETE /v1/evidence", a.removeFiles)
	mux.HandleFunc("POST /v1/kill/{name}", a.kill)
	return a.guard(mux)
}

// change applies imp (nil: clears) on the place key. For a pod, ip is
// the address the harness asked for (from the query): an agent that has
// not yet read the ConfigMap naming it there answers 412, to be retried.
func (a *Agent) change(w http.ResponseWriter, r *http.Request, key string, imp *shaper.Impairment) {
	a.chg.Lock()
	defer a.chg.Unlock()
	a.mu.Lock()
	live, allowed, p := a.live, a.allowed, a.places[key]
	podKey := strings.TrimPrefix(key, "pod/")
	ip, named := a.pods[podKey]
	a.mu.Unlock()
	if imp != nil && !live {
		writeErr(w, http.StatusConflict, "no live run: the lease %s/%s is absent or was not renewed within its duration", a.cfg.Namespace, RunObject)
		return
	}
	do, t, ifindex := imp, shaper.Target{Link: a.cfg.Uplink}, 0
	switch {
	case key == uplinkKey:
		if imp != nil && !allowed {
			writeErr(w, http.StatusForbidden, "node %s is not in the run's ConfigMap %s/%s (key %s): it was not asked to manage it", a.cfg.Node, a.cfg.Namespace, RunObject, NodesKey)
			return
		}
	case imp == nil:
		if p == nil {
			a.respond(w) // nothing of ours there
			return
		}
		t = p.target
	default:
		if !named {
			writeErr(w, http.StatusForbidden, "pod %s is not in the run's ConfigMap %s/%s (key %s): it was not asked to manage it", podKey, a.cfg.Namespace, RunObject, PodsKey)
			return
		}
		if want := r.URL.Query().Get("ip"); want != "" && want != ip.String() {
			writeErr(w, http.StatusPreconditionFailed, "pod %s: the run's ConfigMap names it at %s, the request at %s: ask again once this agent has read the ConfigMap (every second)", podKey, ip, want)
			return
		}
		h, err := podSide(*imp)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "pod %s: %v", podKey, err)
			return
		}
		veth, index, err := hostVeth(a.cfg.Uplink, ip)
		if err != nil {
			writeErr(w, http.StatusNotFound, "pod %s at %s: %v", podKey, ip, err)
			return
		}
		do, t, ifindex = &h, shaper.Target{Link: shaper.Link{Netns: a.cfg.Uplink.Netns, Name: veth}, Forwards: true}, index
	}
	// Not the request's context: a change dropped half-way (the caller
	// or the pod proxy gone) would leave shaping no one knows of.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	if p != nil && key != uplinkKey && do != nil && (p.target != t || p.ifindex != ifindex) && p.dirty {
		// The pod's veth changed (a new sandbox; a CNI that names veths
		// after the pod reuses the name): what was shaped went with the
		// old one, and the shaper's state of it goes now.
		if err := a.cfg.Shaper.Forget(ctx, p.target); err != nil {
			writeErr(w, http.StatusInternalServerError, "pod %s: clear its old veth %s: %v", podKey, p.target.Link, err)
			return
		}
		p = nil
	}
	if p == nil || p.target != t {
		p = &place{target: t, ifindex: ifindex}
	}
	var err error
	switch {
	case do != nil:
		err = a.cfg.Shaper.Apply(ctx, t, *do)
	case key == uplinkKey:
		err = a.cfg.Shaper.Clear(ctx, t) // what is there, known or not
	default:
		err = a.cfg.Shaper.Forget(ctx, t)
	}
	a.mu.Lock()
	if err != nil {
		p.dirty = true // the lapse of the run clears what is left
	} else {
		p.applied, p.dirty = imp, imp != nil
	}
	if key == uplinkKey || p.dirty {
		a.places[key] = p
	} else {
		delete(a.places, key)
	}
	a.mu.Unlock()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "%s: %v", t.Link, err)
		return
	}
	a.respond(w)
}

func (a *Agent) respond(w http.ResponseWriter) {
	a.mu.Lock()
	st := a.state()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

// TokenHeader carries the run's token. Not Authorization: the API
// server's pod proxy, which the harness reaches the agent through, strips
// that header (so that a user's credentials never reach a pod).
const TokenHeader = "X-Edgefault-Token"

// guard checks the token (in constant time) and bounds the requests in
// progress.
func (a *Agent) guard(next http.Handler) http.Handler {
	want := []byte(a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), want) != 1 {
			writeErr(w, http.StatusUnauthorized, "the run's token is required in %s (the run's Secret)", TokenHeader)
			return
		}
		select {
		case a.sem <- struct{}{}:
			defer func() { <-a.sem }()
		default:
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusTooManyRequests, "too many requests in progress")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}
