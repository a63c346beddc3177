// Package failover watches a node's path to the cloud through its primary
// gateway and, when that path is lost, moves the node's default route to
// the site's alternate gateway; once the primary has stayed healthy for a
// hold-down, it moves it back. With no alternate (a store, a truck) it
// marks the node degraded and changes nothing.
//
// Probes are TCP connects to configured targets (the cloud's services).
// They always go through the primary, even while the default route points
// at the alternate: they carry a firewall mark that a policy-routing rule
// sends to a table of their own whose default route is the primary. So
// failing back is decided on evidence about the primary, never guessed.
//
// Loss is declared when FailAfter of the last Window probes failed;
// recovery when every probe for HoldDown succeeded. A link that flaps
// inside the hold-down causes one switch away and none back.
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/internal/nsdo"
	"github.com/edgefault/edgefault/runtime/events"
	"github.com/vishvananda/netlink"
)

// State is where the node's traffic goes.
type State string

// States.
const (
	Primary   State = "primary"   // through the primary gateway, which is healthy
	Alternate State = "alternate" // the primary's path is lost: through the alternate
	Degraded  State = "degraded"  // the primary's path is lost and there is no alternate
)

// Config configures failover. Zero values take the defaults.
type Config struct {
	// Primary is the node's own gateway; Alternate the other building's
	// (invalid: none, so loss means Degraded).
	Primary, Alternate netip.Addr
	// Targets are host:port addresses to probe with TCP connects.
	Targets []string
	// Interval between probes (default 500ms); Timeout per probe (1s).
	Interval, Timeout time.Duration
	// Window and FailAfter: loss after FailAfter failures among the last
	// Window probes (defaults 4 and 3: about 2 s at the default interval).
	Window, FailAfter int
	// HoldDown is how long the primary must stay healthy before failing
	// back (default 10s).
	HoldDown time.Duration
	// Mark and Table are the policy routing for probes (defaults
	// DefaultMark and 239).
	Mark  uint32
	Table int
	// Netns runs everything in that network namespace (a name or path;
	// default: the process's own). Tests use it; edgeguard serve runs
	// inside its node.
	Netns string
	// Kube, when set, marks the node in the site's cluster while the
	// uplink is lost (label, taint, cordon, drain) and unmarks it after.
	Kube   *Kube
	Node   string
	Events *events.Log
	Logger *slog.Logger
}

// DefaultMark is the firewall mark of failover's probes. It shares no bit
// with the marks cluster networking sets or matches on the node:
// kube-proxy's 0x4000 (masquerade) and 0x8000 (drop: a probe carrying it
// is dropped by kube-proxy's firewall chain, which is how the first mark,
// 0xef01, made every probe to a Service time out on a real kind node),
// Cilium's 0x0f00, Calico's 0xffff0000.
const DefaultMark = 0xef

// ReservedMarkBits are the mark bits DefaultMark keeps clear of.
const ReservedMarkBits = 0x4000 | 0x8000 | 0x0f00 | 0xffff0000

func (c *Config) defaults() {
	if c.Interval == 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Window == 0 {
		c.Window = 4
	}
	if c.FailAfter == 0 {
		c.FailAfter = 3
	}
	if c.HoldDown == 0 {
		c.HoldDown = 10 * time.Second
	}
	if c.Mark == 0 {
		c.Mark = DefaultMark
	}
	if c.Table == 0 {
		c.Table = 239
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case !c.Primary.IsValid():
		return errors.New("failover needs the primary gateway's address (--failover-primary)")
	case len(c.Targets) == 0:
		return errors.New("failover needs at least one target to probe (--failover-target host:port)")
	case c.FailAfter > c.Window:
		return fmt.Errorf("failover: %d failures cannot happen in a window of %d probes", c.FailAfter, c.Window)
	case c.Interval < 0 || c.Timeout < 0 || c.HoldDown < 0:
		return errors.New("failover durations must not be negative")
	}
	for _, t := range c.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return fmt.Errorf("failover target %q is not host:port", t)
		}
	}
	return nil
}

// Status is failover's state, as served at /v1/failover.
type Status struct {
	Node           string    `json:"node"`
	State          State     `json:"state"`
	Since          time.Time `json:"since"`
	Reason         string    `json:"reason"`
	Primary        string    `json:"primary"`
	Alternate      string    `json:"alternate,omitempty"`
	PrimaryHealthy bool      `json:"primaryHealthy"`
	HealthySince   time.Time `json:"healthySince,omitzero"`
	Switches       int       `json:"switches"`
	Probes         int64     `json:"probes"`
	Failures       int64     `json:"failures"`
	LastError      string    `json:"lastError,omitempty"`
	// Marked says the node's marks in the cluster match the state (set
	// once applied); KubeError is the last failure applying them.
	Marked    bool   `json:"marked"`
	KubeError string `json:"kubeError,omitempty"`
}

// Failover is a running failover. Its methods are safe for concurrent use.
type Failover struct {
	cfg    Config
	mu     sync.Mutex
	st     Status
	change chan struct{}
	recent []bool // last Window probe results, true = ok
	dev    int    // link index of the interface the gateways are on
}

// New checks cfg and returns a failover on the primary. Call Run.
func New(cfg Config) (*Failover, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Failover{cfg: cfg, change: make(chan struct{})}
	f.st = Status{Node: cfg.Node, State: Primary, Since: time.Now().UTC(), Reason: "starting", Primary: cfg.Primary.String()}
	if cfg.Alternate.IsValid() {
		f.st.Alternate = cfg.Alternate.String()
	}
	return f, nil
}

// Status is a copy of the status.
func (f *Failover) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// IsOpen reports whether the node has a path to the cloud (through either
// gateway): what the store-and-forward buffer asks before forwarding.
func (f *Failover) IsOpen() bool { return f.Status().State != Degraded }

// Changed returns a channel closed at the next state change.
func (f *Failover) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.change
}

func (f *Failover) setLocked(s State, reason string) {
	from := f.st.State
	f.st.State, f.st.Reason, f.st.Since = s, reason, time.Now().UTC()
	if from != s {
		f.st.Switches++
		close(f.change)
		f.change = make(chan struct{})
		f.cfg.Events.Emit(string(s), "from", string(from), "reason", reason)
		f.cfg.Logger.Warn("failover "+string(s), "from", from, "reason", reason)
	}
}

// handle returns a netlink handle in the configured namespace.
func (f *Failover) handle() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := nsdo.Do(f.cfg.Netns, func() error {
		var err error
		h, err = netlink.NewHandle()
		return err
	})
	return h, err
}

// setup finds the gateways' interface and installs the probes' policy
// routing: a rule sending marked packets to a table whose default route is
// the primary.
func (f *Failover) setup() error {
	h, err := f.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	routes, err := h.RouteGet(f.cfg.Primary.AsSlice())
	if err != nil || len(routes) == 0 {
		return fmt.Errorf("no route to the primary gateway %s: %v", f.cfg.Primary, err)
	}
	f.dev = routes[0].LinkIndex
	if err := h.RouteReplace(&netlink.Route{LinkIndex: f.dev, Gw: f.cfg.Primary.AsSlice(), Table: f.cfg.Table}); err != nil {
		return fmt.Errorf("probe route table %d: %w (failover needs NET_ADMIN)", f.cfg.Table, err)
	}
	rule := netlink.NewRule()
	rule.Mark, rule.Table, rule.Priority = f.cfg.Mark, f.cfg.Table, 100
	mask := uint32(0xffffffff)
	rule.Mask = &mask
	_ = h.RuleDel(rule)
	if err := h.RuleAdd(rule); err != nil {
		return fmt.Errorf("probe rule: %w", err)
	}
	return nil
}

// teardown removes the policy routing and puts the default route back on
// the primary.
func (f *Failover) teardown() {
	h, err := f.handle()
	if err != nil {
		return
	}
	defer h.Close()
	rule := netlink.NewRule()
	rule.Mark, rule.Table, rule.Priority = f.cfg.Mark, f.cfg.Table, 100
	mask := uint32(0xffffffff)
	rule.Mask = &mask
	_ = h.RuleDel(rule)
	_ = h.RouteDel(&netlink.Route{LinkIndex: f.dev, Gw: f.cfg.Primary.AsSlice(), Table: f.cfg.Table})
	_ = f.route(f.cfg.Primary)
}

// route points the main table's default route at gw.
func (f *Failover) route(gw netip.Addr) error {
	h, err := f.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.RouteReplace(&netlink.Route{LinkIndex: f.dev, Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// probe tries every target through the primary; one answer is health.
func (f *Failover) probe(ctx context.Context) error {
	var errs []error
	for _, t := range f.cfg.Targets {
		err := nsdo.Do(f.cfg.Netns, func() error {
			d := net.Dialer{Timeout: f.cfg.Timeout, Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(f.cfg.Mark))
				}); err != nil {
					return err
				}
				return serr
			}}
			c, err := d.DialContext(ctx, "tcp", t)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run watches until ctx ends, then puts the default route back on the
// primary and removes its policy routing.
func (f *Failover) Run(ctx context.Context) error {
	if err := f.setup(); err != nil {
		return err
	}
	defer f.teardown()
	if f.cfg.Kube != nil {
		go f.reconcile(ctx)
	}
	f.cfg.Events.Emit("watching", "primary", f.cfg.Primary.String(), "alternate", f.st.Alternate, "targets", f.cfg.Targets)
	// A probe starts every interval without waiting for the one before
	// to time out, so a dead path is declared after about
	// FailAfter × Interval + Timeout, not FailAfter × Timeout. Results are
	// applied in the order the probes started.
	results := make(chan chan error, f.cfg.Window+int(f.cfg.Timeout/f.cfg.Interval)+2)
	go func() {
		t := time.NewTicker(f.cfg.Interval)
		defer t.Stop()
		defer close(results)
		for {
			r := make(chan error, 1)
			go func() { r <- f.probe(ctx) }()
			select {
			case results <- r:
			case <-ctx.Done():
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	for r := range results {
		err := <-r
		if ctx.Err() != nil {
			return nil
		}
		f.step(err, time.Now())
	}
	return nil
}

// step applies one probe result.
func (f *Failover) step(err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := err == nil
	f.st.Probes++
	f.recent = append(f.recent, ok)
	if len(f.recent) > f.cfg.Window {
		f.recent = f.recent[1:]
	}
	if !ok {
		f.st.Failures++
		f.st.LastError = err.Error()
		f.st.HealthySince = time.Time{}
	} else if f.st.HealthySince.IsZero() {
		f.st.HealthySince = now.UTC()
	}
	f.st.PrimaryHealthy = ok
	fails := 0
	for _, r := range f.recent {
		if !r {
			fails++
		}
	}
	switch f.st.State {
	case Primary:
		if fails < f.cfg.FailAfter {
			return
		}
		reason := fmt.Sprintf("%d of the last %d probes through %s failed: %v", fails, len(f.recent), f.cfg.Primary, err)
		if !f.cfg.Alternate.IsValid() {
			f.setLocked(Degraded, reason+"; no alternate gateway: keep operating locally")
			return
		}
		if rerr := f.route(f.cfg.Alternate); rerr != nil {
			f.st.LastError = rerr.Error()
			f.cfg.Logger.Error("failover cannot switch routes", "err", rerr)
			return
		}
		f.setLocked(Alternate, reason+"; default route now via "+f.cfg.Alternate.String())
	case Alternate, Degraded:
		if !ok || now.Sub(f.st.HealthySince) < f.cfg.HoldDown {
			return
		}
		reason := fmt.Sprintf("the primary %s answered every probe for %s", f.cfg.Primary, f.cfg.HoldDown)
		if f.st.State == Alternate {
			if rerr := f.route(f.cfg.Primary); rerr != nil {
				f.st.LastError = rerr.Error()
				f.cfg.Logger.Error("failover cannot switch routes back", "err", rerr)
				return
			}
		}
		f.recent = f.recent[:0]
		f.setLocked(Primary, reason)
	}
}

// reconcile keeps the node's marks in the cluster in step with the state,
// retrying (the API may be unreachable exactly when the uplink is lost)
// until they are applied; steps are idempotent, so a retry never applies
// anything twice.
func (f *Failover) reconcile(ctx context.Context) {
	applied := "" // nothing yet: the first pass also clears marks a crash left
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		ch := f.Changed()
		st := f.Status()
		down := st.State != Primary
		want := fmt.Sprint(down)
		if want != applied {
			actx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := f.cfg.Kube.apply(actx, down, st.Reason)
			cancel()
			f.mu.Lock()
			if err != nil {
				f.st.Marked, f.st.KubeError = false, err.Error()
				f.mu.Unlock()
				backoff = min(max(2*backoff, 500*time.Millisecond), 10*time.Second)
				f.cfg.Logger.Warn("failover: cluster actions failed; retrying", "err", err, "in", backoff)
				f.cfg.Events.Emit("kube-retry", "down", down, "err", err.Error())
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				continue
			}
			f.st.Marked, f.st.KubeError = true, ""
			f.mu.Unlock()
			applied, backoff = want, 0
			f.cfg.Events.Emit("marked", "down", down)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
			f.mu.Lock()
			f.st.Marked = false
			f.mu.Unlock()
		}
	}
}

// DefaultGateway is the gateway of this network namespace's IPv4 default
// route.
func DefaultGateway() (netip.Addr, error) {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			if a, ok := netip.AddrFromSlice(r.Gw.To4()); ok {
				return a, nil
			}
		}
	}
	return netip.Addr{}, errors.New("no IPv4 default route with a gateway")
}
