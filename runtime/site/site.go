// Package site lets the runtimes behind one uplink agree, over their LAN,
// on how they share it. Each runtime announces while it is flushing its
// buffer; every forwarder then takes an equal part of the flush share, so
// the site's flushes together stay within the share of the uplink however
// many nodes come back at once. A gate that reads its link slow while the
// site flushes asks the site for a moment of quiet and measures again, so a
// flush (its own or a neighbour's) never closes a gate; a gate about to
// confirm a reopening asks for the same quiet, so its confirmation measures
// the link and not the neighbours' backlogs.
//
// It needs no API server and no leader: small UDP datagrams to the site's
// other runtimes, four a second from each runtime while it flushes, one
// when it stops. A runtime that hears nothing flushes at the whole share,
// as it would alone.
package site

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/record"
)

// DefaultPort is the UDP port runtimes listen on for their site.
const DefaultPort = 7947

// Bounds on what a peer can make a runtime do: a quiet holds flushes at
// most MaxQuiet (a full-length speed test with its ping and upload), its
// sender may extend it within that but not beyond, and the sender's next
// one is heard only as long after it ended as it lasted (at least
// quietGap): a peer holds the flush at most half the time.
const (
	MaxQuiet = 30 * time.Second
	quietGap = time.Second
	maxPeers = 64
	maxDgram = 512
	// announceEvery is how often a flushing runtime says so; a peer
	// unheard for expireAfter has stopped.
	announceEvery = 250 * time.Millisecond
	expireAfter   = 1200 * time.Millisecond
	// maxSkew bounds a keyed message's age (replays).
	maxSkew = 5 * time.Second
)

// Config configures a Coordinator.
type Config struct {
	// Site names the site; announcements of other sites are ignored.
	Site string
	// Node is this runtime's node.
	Node string
	// Listen is the UDP address to listen on (default ":7947" when there
	// are peers; with neither, the coordinator is this runtime's alone:
	// its gate still tells its own flush from a slow link).
	Listen string
	// Peers are the other runtimes of the site (host:port), or a broadcast
	// address of the site's LAN.
	Peers []string
	// Key, when set, signs every datagram (HMAC-SHA256) and drops those
	// not signed with it. Without it, datagrams are taken from the peers'
	// addresses only (any address when a peer is a broadcast address),
	// and whoever can send from one of them can slow the site's flushes
	// (never below 1/64 of the share), hold them, make its gates wait
	// before they measure, and open a gate whose own probes read good on a
	// forged confirmation.
	Key    []byte
	Events *events.Log
	Logger *slog.Logger
}

// Coordinator is one runtime's part in its site's agreement. Its methods
// are safe for concurrent use.
type Coordinator struct {
	cfg   Config
	conn  *net.UDPConn
	peers []*net.UDPAddr
	// from are the peers' addresses datagrams are taken from; nil: any
	// (a peer is a broadcast address, or a key signs them).
	from map[netip.Addr]bool

	mu       sync.Mutex
	flushing bool
	heard    map[string]peer // node -> what it last said
	// ownUntil is the quiet this runtime's gate asked for.
	ownUntil time.Time
	// confirmedBps and confirmedAt are a peer's latest confirmation.
	confirmedBps float64
	confirmedAt  time.Time
	kick         chan struct{} // announce now
}

type peer struct {
	flushing bool
	at       time.Time
	// quietFrom and quietUntil are its last quiet: its gate measures
	// then, so this one's readings are not the link's.
	quietFrom, quietUntil time.Time
	nextQuiet             time.Time // its next quiet is heard from then on
}

// message is one datagram.
type message struct {
	V        int    `json:"v"`
	Site     string `json:"site"`
	Node     string `json:"node"`
	Flushing bool   `json:"flushing"`
	// QuietMs asks every runtime of the site to hold its flush this long.
	QuietMs int64 `json:"quietMs,omitempty"`
	// Done ends the sender's quiet: its gate has measured.
	Done bool `json:"done,omitempty"`
	// ConfirmedBps says the sender's gate has just confirmed the uplink
	// with a full test that read this rate.
	ConfirmedBps int64 `json:"confirmedBps,omitempty"`
	// TimeMs is the sender's clock (unix ms): checked only when keyed.
	TimeMs int64 `json:"t"`
}

// New checks cfg and binds the socket. Call Run.
func New(cfg Config) (*Coordinator, error) {
	if err := record.ValidNode(cfg.Site); err != nil {
		return nil, fmt.Errorf("site name: %w", err)
	}
	if err := record.ValidNode(cfg.Node); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Coordinator{cfg: cfg, heard: map[string]peer{}, kick: make(chan struct{}, 1)}
	if cfg.Listen == "" && len(cfg.Peers) == 0 {
		return c, nil
	}
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf(":%d", DefaultPort)
	}
	if len(cfg.Key) == 0 {
		c.from = map[netip.Addr]bool{}
	}
	for _, p := range cfg.Peers {
		a, err := net.ResolveUDPAddr("udp", p)
		if err != nil || a.IP == nil || a.Port == 0 {
			return nil, fmt.Errorf("site peer %q: want host:port, e.g. 10.0.1.12:%d", p, DefaultPort)
		}
		c.peers = append(c.peers, a)
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if ip.Is4() && ip.As4()[3] == 255 || ip.IsMulticast() {
			c.from = nil // a broadcast: the senders' addresses are not known
		} else if c.from != nil {
			c.from[ip] = true
		}
	}
	la, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("site listen %q: %w", cfg.Listen, err)
	}
	if c.conn, err = net.ListenUDP("udp", la); err != nil {
		return nil, fmt.Errorf("site listen %s: %w", cfg.Listen, err)
	}
	// A peer may be the LAN's broadcast address.
	if rc, err := c.conn.SyscallConn(); err == nil {
		_ = rc.Control(setBroadcast)
	}
	return c, nil
}

// Run receives the site's datagrams and announces this runtime's flush
// until ctx ends; it closes the socket.
func (c *Coordinator) Run(ctx context.Context) error {
	if c.conn == nil {
		<-ctx.Done()
		return nil
	}
	go func() {
		<-ctx.Done()
		c.conn.Close()
	}()
	go c.announce(ctx)
	buf := make([]byte, maxDgram+1)
	for {
		n, from, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			c.cfg.Logger.Warn("site: receive failed", "err", err)
			continue
		}
		if n > maxDgram {
			continue
		}
		if c.from != nil && !c.from[from.AddrPort().Addr().Unmap()] {
			continue
		}
		m, err := c.decode(buf[:n])
		if err != nil {
			c.cfg.Logger.Debug("site: datagram dropped", "from", from, "why", err)
			continue
		}
		c.receive(m)
	}
}

func (c *Coordinator) decode(b []byte) (message, error) {
	var m message
	if len(c.cfg.Key) > 0 {
		if len(b) < sha256.Size {
			return m, errors.New("unsigned")
		}
		body, sig := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
		mac := hmac.New(sha256.New, c.cfg.Key)
		mac.Write(body)
		if !hmac.Equal(sig, mac.Sum(nil)) {
			return m, errors.New("bad signature")
		}
		b = body
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, err
	}
	switch {
	case m.V != 1:
		return m, fmt.Errorf("version %d", m.V)
	case m.Site != c.cfg.Site:
		return m, fmt.Errorf("site %q", m.Site)
	case m.Node == c.cfg.Node:
		return m, errors.New("our own")
	case record.ValidNode(m.Node) != nil:
		return m, errors.New("bad node name")
	case m.QuietMs < 0 || m.ConfirmedBps < 0:
		return m, errors.New("negative quiet or rate")
	case len(c.cfg.Key) > 0 && time.Since(time.UnixMilli(m.TimeMs)).Abs() > maxSkew:
		return m, errors.New("stale")
	}
	return m, nil
}

func (c *Coordinator) receive(m message) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, known := c.heard[m.Node]
	if !known && len(c.heard) >= maxPeers {
		c.expireLocked(now)
		if len(c.heard) >= maxPeers {
			return
		}
	}
	p.flushing, p.at = m.Flushing, now
	want := time.Duration(m.QuietMs) * time.Millisecond
	switch {
	case m.QuietMs > 0 && p.quietUntil.After(now):
		// Its quiet goes on (a confirmation followed by a full-length
		// test): extended, never past MaxQuiet from its start.
		p.quietUntil = minTime(now.Add(want), p.quietFrom.Add(MaxQuiet))
		p.nextQuiet = p.quietUntil.Add(max(quietGap, p.quietUntil.Sub(p.quietFrom)))
		c.cfg.Events.Emit("site-quiet", "by", m.Node, "ms", p.quietUntil.Sub(now).Milliseconds(), "extended", true)
	case m.QuietMs > 0 && !now.Before(p.nextQuiet):
		p.quietFrom, p.quietUntil = now, now.Add(min(want, MaxQuiet))
		p.nextQuiet = p.quietUntil.Add(max(quietGap, p.quietUntil.Sub(now)))
		c.cfg.Events.Emit("site-quiet", "by", m.Node, "ms", p.quietUntil.Sub(now).Milliseconds())
	}
	if m.Done && p.quietUntil.After(now) {
		p.quietUntil = now
		p.nextQuiet = now.Add(max(quietGap, now.Sub(p.quietFrom)))
		c.cfg.Events.Emit("site-quiet-done", "by", m.Node)
	}
	if m.ConfirmedBps > 0 {
		c.confirmedBps, c.confirmedAt = float64(m.ConfirmedBps), now
		c.cfg.Events.Emit("site-confirmed", "by", m.Node, "bps", m.ConfirmedBps)
	}
	c.heard[m.Node] = p
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (c *Coordinator) expireLocked(now time.Time) {
	for n, p := range c.heard {
		if now.Sub(p.at) > expireAfter && now.After(p.nextQuiet) {
			delete(c.heard, n)
		}
	}
}

// announce says "flushing" every announceEvery while this runtime flushes,
// and once more when it stops.
func (c *Coordinator) announce(ctx context.Context) {
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	was := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.mu.Lock()
		on := c.flushing
		c.mu.Unlock()
		if on || was {
			c.send(message{Flushing: on})
		}
		was = on
	}
}

func (c *Coordinator) send(m message) {
	if c.conn == nil {
		return
	}
	m.V, m.Site, m.Node, m.TimeMs = 1, c.cfg.Site, c.cfg.Node, time.Now().UnixMilli()
	b, _ := json.Marshal(m)
	if len(c.cfg.Key) > 0 {
		mac := hmac.New(sha256.New, c.cfg.Key)
		mac.Write(b)
		b = mac.Sum(b)
	}
	for _, p := range c.peers {
		// Best effort: a lost datagram is repeated within announceEvery.
		_, _ = c.conn.WriteToUDP(b, p)
	}
}

// SetFlushing says whether this runtime is flushing now (the forwarder
// calls it as it starts and stops).
func (c *Coordinator) SetFlushing(on bool) {
	c.mu.Lock()
	changed := c.flushing != on
	c.flushing = on
	c.mu.Unlock()
	if changed {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Flushers is how many of the site's runtimes are flushing now, this one
// included when it is (at least 1): the forwarder's share is the site's
// divided by it.
func (c *Coordinator) Flushers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.peersFlushingLocked()
	if c.flushing {
		n++
	}
	return min(max(n, 1), maxPeers)
}

func (c *Coordinator) peersFlushingLocked() int {
	now := time.Now()
	n := 0
	for _, p := range c.heard {
		if p.flushing && now.Sub(p.at) <= expireAfter {
			n++
		}
	}
	return n
}

// Flushing says whether any runtime of the site, this one included, is
// flushing now: a gate that reads its link slow then asks for quiet
// before it believes the reading.
func (c *Coordinator) Flushing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushing || c.peersFlushingLocked() > 0
}

// Shared says whether this runtime has peers to agree with.
func (c *Coordinator) Shared() bool { return c.conn != nil && len(c.peers) > 0 }

// PeerQuietUntil is when the quiets other runtimes asked for end (the
// past: none now): a neighbour's gate measures until then, and its test
// fills the uplink.
func (c *Coordinator) PeerQuietUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var until time.Time
	for _, p := range c.heard {
		if p.quietUntil.After(until) {
			until = p.quietUntil
		}
	}
	return until
}

// PeerQuietDuring says whether another runtime's quiet overlapped
// [from, to]: a reading then is not the link's.
func (c *Coordinator) PeerQuietDuring(from, to time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.heard {
		if !p.quietFrom.IsZero() && !p.quietFrom.After(to) && !p.quietUntil.Before(from) {
			return true
		}
	}
	return false
}

// Quiet asks every runtime of the site, this one included, to hold its
// flush for d (at most MaxQuiet) while this one's gate measures.
func (c *Coordinator) Quiet(d time.Duration) {
	d = min(d, MaxQuiet)
	c.mu.Lock()
	c.ownUntil = time.Now().Add(d)
	c.mu.Unlock()
	// Twice: a lost datagram would let a neighbour's flush spoil the
	// measurement.
	for range 2 {
		c.send(message{Flushing: c.isFlushing(), QuietMs: d.Milliseconds()})
	}
}

// Confirmed tells the site this runtime's gate has confirmed the uplink at
// bps: a neighbour whose own probes already say good may open on it
// instead of testing the same uplink again.
func (c *Coordinator) Confirmed(bps float64) {
	for range 2 {
		c.send(message{Flushing: c.isFlushing(), ConfirmedBps: int64(bps)})
	}
}

// PeerConfirmed is a neighbour's latest confirmation of the uplink (zero:
// none).
func (c *Coordinator) PeerConfirmed() (bps float64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.confirmedBps, c.confirmedAt
}

func (c *Coordinator) isFlushing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushing
}

// QuietDone ends this runtime's quiet early: its gate has measured.
func (c *Coordinator) QuietDone() {
	c.mu.Lock()
	asked := c.ownUntil.After(time.Now())
	c.ownUntil = time.Time{}
	c.mu.Unlock()
	if asked {
		for range 2 {
			c.send(message{Flushing: c.isFlushing(), Done: true})
		}
	}
}

// QuietUntil is when the quiet the site asked for ends (the past: none).
func (c *Coordinator) QuietUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.ownUntil
	for _, p := range c.heard {
		if p.quietUntil.After(until) {
			until = p.quietUntil
		}
	}
	return until
}

func setBroadcast(fd uintptr) {
	_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
}
