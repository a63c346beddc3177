// Package dial dials the cloud by name and keeps the addresses a name last
// resolved to, so that a resolver that fails or answers slowly does not cut
// a node off a cloud it can still reach over IP: a lookup that fails (or
// outlasts its timeout) falls back to the last good answer, and says so.
package dial

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
)

// Dialer dials host:port addresses, resolving host itself. Its zero value
// is not usable: make one with New.
type Dialer struct {
	resolver *net.Resolver
	timeout  time.Duration
	stale    bool
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	ev       *events.Log

	mu   sync.Mutex
	last map[string][]string // host -> the addresses it last resolved to
	// staleNow: hosts being dialled on a stale answer (one event a change).
	staleNow map[string]bool
}

// Option configures a Dialer.
type Option func(*Dialer)

// WithServer resolves with the DNS server at addr (host:port) over UDP,
// falling back to TCP for truncated answers, instead of the system's.
func WithServer(addr string) Option {
	return func(d *Dialer) {
		var nd net.Dialer
		d.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return nd.DialContext(ctx, network, addr)
		}}
	}
}

// WithLookupTimeout bounds a lookup that has a last good answer to fall
// back on (default 2 s): a slower answer counts as a failure. Other
// lookups are bounded by the dial's context (and the resolver's own
// timeouts) only.
func WithLookupTimeout(t time.Duration) Option { return func(d *Dialer) { d.timeout = t } }

// WithoutStale makes a failed lookup fail the dial, as a client without a
// cache does (for comparison: the negative control of a DNS failure).
func WithoutStale() Option { return func(d *Dialer) { d.stale = false } }

// WithEvents logs "dns-stale" when a host is dialled on its last good
// answer and "dns-fresh" when it resolves again.
func WithEvents(ev *events.Log) Option { return func(d *Dialer) { d.ev = ev } }

// WithDial dials with f (default: a net.Dialer with a 5 s timeout).
func WithDial(f func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(d *Dialer) { d.dial = f }
}

// New returns a Dialer using the system's resolver and the last good
// answer when a lookup fails or takes over 2 s.
func New(opts ...Option) *Dialer {
	nd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	d := &Dialer{resolver: net.DefaultResolver, timeout: 2 * time.Second, stale: true, dial: nd.DialContext,
		last: map[string][]string{}, staleNow: map[string]bool{}}
	for _, o := range opts {
		o(d)
	}
	return d
}

// DialContext dials addr (host:port); a host that is an IP address is
// dialled as it is.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return d.dial(ctx, network, addr)
	}
	ips, err := d.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	var first error
	for _, ip := range ips {
		c, err := d.dial(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// lookup resolves host, or gives its last good answer when that fails.
// Only a lookup with an answer to fall back on is cut at the timeout:
// without one, a slow resolver is still the only way to the cloud.
func (d *Dialer) lookup(ctx context.Context, host string) ([]string, error) {
	d.mu.Lock()
	_, fallback := d.last[host]
	d.mu.Unlock()
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if d.stale && fallback {
		lctx, cancel = context.WithTimeout(ctx, d.timeout)
	}
	start := time.Now()
	ips, err := d.resolver.LookupHost(lctx, host)
	cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil && len(ips) > 0 {
		d.last[host] = ips
		if d.staleNow[host] {
			delete(d.staleNow, host)
			d.ev.Emit("dns-fresh", "host", host, "addrs", ips)
		}
		return ips, nil
	}
	if err == nil {
		err = fmt.Errorf("no addresses")
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	last, ok := d.last[host]
	if !d.stale || !ok {
		return nil, fmt.Errorf("resolve %s (after %v): %w", host, time.Since(start).Round(time.Millisecond), err)
	}
	if !d.staleNow[host] {
		d.staleNow[host] = true
		d.ev.Emit("dns-stale", "host", host, "addrs", last, "err", err.Error())
	}
	return last, nil
}
