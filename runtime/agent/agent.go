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
	"net/http"
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
	// Poll is how often the Lease and ConfigMap are read (default 1 s).
	Poll time.Duration
	Log  *slog.Logger
}

// Agent serves the API and watches the run's Lease.
type Agent struct {
	cfg Config
	sem chan struct{} // bounds requests in progress

	mu      sync.Mutex
	applied *shaper.Impairment // on the uplink, nil if nothing
	// dirty: the uplink may hold shaping to clear (something applied, an
	// apply that failed half-way, or what an agent before this one left).
	dirty   bool
	live    bool          // the Lease is being renewed
	allowed bool          // the ConfigMap names this node
	renew   time.Time     // the Lease's renew time last seen
	dur     time.Duration // and its duration
	changed time.Time     // when (on our clock) it last changed
	expired int           // times the Lease ran out with something applied
}

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
	return &Agent{cfg: cfg, sem: make(chan struct{}, 4), dirty: true}, nil
}

// Run reads the Lease and ConfigMap every Poll until ctx ends, clearing
// what it applied once the Lease is no longer renewed; at the end it
// clears too. It starts by clearing what an agent before it may have left
// (a crash, an OOM kill): no run is known to be live yet.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.clear(ctx, "the agent starts: what an agent before it may have left"); err != nil {
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
			return a.clear(cctx, "the agent is stopping")
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
	renew, dur, allowed := a.renew, a.dur, a.allowed
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
	case apierrors.IsNotFound(err):
		allowed = false
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
	a.live, a.allowed = live, allowed
	stale := a.dirty && (!live || !allowed)
	a.mu.Unlock()
	if stale {
		why := "the run's lease was not renewed"
		if live {
			why = "the run's ConfigMap no longer names this node"
		}
		if err := a.clear(ctx, why); err != nil {
			a.cfg.Log.Error("clearing after the run", "err", err)
		}
	}
}

// clear removes what the agent applied, or may have (dirty).
func (a *Agent) clear(ctx context.Context, why string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty {
		return nil
	}
	if err := a.cfg.Shaper.Clear(ctx, shaper.Target{Link: a.cfg.Uplink}); err != nil {
		return fmt.Errorf("clear %s: %w", a.cfg.Uplink, err)
	}
	was := "whatever was there"
	if a.applied != nil {
		was = a.applied.String()
		if !a.live {
			a.expired++
		}
	}
	a.cfg.Log.Info("cleared the uplink", "link", a.cfg.Uplink.String(), "why", why, "was", was)
	a.applied, a.dirty = nil, false
	return nil
}

// State is what GET /v1/impairments answers.
type State struct {
	Node    string             `json:"node"`
	Live    bool               `json:"live"`
	Allowed bool               `json:"allowed"`
	Uplink  *shaper.Impairment `json:"uplink,omitempty"`
	Expired int                `json:"expired"`
}

// Handler is the agent's API: GET /v1/impairments (the state), PUT
// /v1/impairments/uplink (an impairment as JSON) and DELETE
// /v1/impairments/uplink. Every request needs the run's token; a change
// needs a live Lease and this node in the ConfigMap.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/impairments", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		st := State{Node: a.cfg.Node, Live: a.live, Allowed: a.allowed, Uplink: a.applied, Expired: a.expired}
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("PUT /v1/impairments/uplink", func(w http.ResponseWriter, r *http.Request) {
		var imp shaper.Impairment
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&imp); err != nil {
			writeErr(w, http.StatusBadRequest, "the impairment: %v", err)
			return
		}
		if err := imp.Validate(); err != nil {
			writeErr(w, http.StatusBadRequest, "the impairment: %v", err)
			return
		}
		a.change(w, r, &imp)
	})
	mux.HandleFunc("DELETE /v1/impairments/uplink", func(w http.ResponseWriter, r *http.Request) {
		a.change(w, r, nil)
	})
	return a.guard(mux)
}

// change applies imp (nil: clears) on the uplink.
func (a *Agent) change(w http.ResponseWriter, r *http.Request, imp *shaper.Impairment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if imp != nil && !a.live {
		writeErr(w, http.StatusConflict, "no live run: the lease %s/%s is absent or was not renewed within its duration", a.cfg.Namespace, RunObject)
		return
	}
	if imp != nil && !a.allowed {
		writeErr(w, http.StatusForbidden, "node %s is not in the run's ConfigMap %s/%s (key %s): it was not asked to manage it", a.cfg.Node, a.cfg.Namespace, RunObject, NodesKey)
		return
	}
	// Not the request's context: a change dropped half-way (the caller
	// or the pod proxy gone) would leave shaping no one knows of.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	t := shaper.Target{Link: a.cfg.Uplink}
	var err error
	if imp == nil {
		err = a.cfg.Shaper.Clear(ctx, t) // what is there, known or not
	} else {
		err = a.cfg.Shaper.Apply(ctx, t, *imp)
	}
	if err != nil {
		a.dirty = true // the lapse of the run clears what is left
		writeErr(w, http.StatusInternalServerError, "%s: %v", a.cfg.Uplink, err)
		return
	}
	a.applied, a.dirty = imp, imp != nil
	writeJSON(w, http.StatusOK, State{Node: a.cfg.Node, Live: a.live, Allowed: a.allowed, Uplink: a.applied, Expired: a.expired})
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
