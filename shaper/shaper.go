package shaper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/ledger"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Shaper applies impairments to links and removes them again.
type Shaper struct {
	backend  Backend // resolved: netem or fallback
	caps     Capabilities
	ledger   *ledger.Ledger
	owner    string
	stateDir string
	log      *slog.Logger

	// mu serialises changes made through this Shaper and guards conns:
	// open namespaces, reused across calls (a fleet's fabric is shaped once
	// per member) and checked against the namespace file on each use.
	mu    sync.Mutex
	conns map[string]*nsConn
	locks map[string]*os.File // open lock files, by path
}

// maxConns bounds the namespaces a Shaper keeps open.
const maxConns = 64

// conn returns an open connection to l's namespace, reusing a cached one if
// it still names the same namespace (a name can be reused for a new one).
func (s *Shaper) conn(l Link) (*nsConn, error) {
	key := l.NetnsPath()
	if c, ok := s.conns[key]; ok {
		if id, err := nsID(key); err == nil && id == c.id {
			return c, nil
		}
		c.Close()
		delete(s.conns, key)
	}
	c, err := openNS(l)
	if err != nil {
		return nil, err
	}
	if s.conns == nil {
		s.conns = map[string]*nsConn{}
	}
	s.conns[key] = c
	return c, nil
}

// Close releases the namespaces the Shaper holds open. Shaping stays.
func (s *Shaper) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.conns {
		c.Close()
		delete(s.conns, k)
	}
	for k, f := range s.locks {
		f.Close()
		delete(s.locks, k)
	}
}

// Option configures a Shaper.
type Option func(*options)

type options struct {
	backend  Backend
	ledger   *ledger.Ledger
	owner    string
	stateDir string
	log      *slog.Logger
	caps     *Capabilities
	helper   string
}

// WithBackend selects the backend (default BackendAuto).
func WithBackend(b Backend) Option { return func(o *options) { o.backend = b } }

// WithLedger records everything the shaper creates in l under owner
// (default: the default ledger, owner "shape").
func WithLedger(l *ledger.Ledger, owner string) Option {
	return func(o *options) { o.ledger, o.owner = l, owner }
}

// WithHelper makes path the executable the delayer helper runs as (and
// the ledger's start gate, see ledger.WithHelper, for the processes this
// Shaper starts). The binary at path must call RunHelperIfInvoked first
// thing in main; the edgeguard binary does. Without it the Shaper uses
// its ledger's helper, by default the running binary (/proc/self/exe),
// which must then call RunHelperIfInvoked itself: a user's own test
// binary that imports the harness usually does not. "" means the default.
func WithHelper(path string) Option { return func(o *options) { o.helper = path } }

// WithStateDir sets where per-link state files live.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithCapabilities skips probing and uses c (tests, callers that probed).
func WithCapabilities(c Capabilities) Option { return func(o *options) { o.caps = &c } }

// New returns a Shaper. It probes the kernel (unless given capabilities)
// and fails if the chosen backend cannot run here.
func New(opts ...Option) (*Shaper, error) {
	o := options{backend: BackendAuto, owner: "shape", log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	if o.ledger == nil {
		l, err := ledger.Open(ledger.DefaultDir())
		if err != nil {
			return nil, err
		}
		o.ledger = l
	}
	if o.helper != "" && o.helper != o.ledger.Helper() {
		// The same directory, with a gate that is the helper too: a
		// binary that calls RunHelperIfInvoked serves both.
		l, err := ledger.Open(o.ledger.Dir(), ledger.WithHelper(o.helper))
		if err != nil {
			return nil, err
		}
		o.ledger = l
	}
	if err := ledger.ValidOwner(o.owner); err != nil {
		return nil, err
	}
	if o.stateDir == "" {
		o.stateDir = filepath.Join(filepath.Dir(o.ledger.Dir()), "shape", o.owner)
	}
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("shaper state directory: %w", err)
	}
	var caps Capabilities
	if o.caps != nil {
		caps = *o.caps
	} else {
		c, err := Probe()
		if err != nil {
			return nil, err
		}
		caps = c
	}
	b := o.backend
	if b == BackendAuto || b == "" {
		b = caps.Backend()
	}
	if err := caps.Check(b); err != nil {
		return nil, err
	}
	return &Shaper{backend: b, caps: caps, ledger: o.ledger, owner: o.owner, stateDir: o.stateDir, log: o.log}, nil
}

// Backend is the backend in use.
func (s *Shaper) Backend() Backend { return s.backend }

// Capabilities are what the kernel was found (or said) to support: a
// second Shaper made WithCapabilities and WithBackend of these skips the
// probe and shapes the same way.
func (s *Shaper) Capabilities() Capabilities { return s.caps }

// linkState is what the shaper knows about one impaired link; it lives in
// a file so a later process (the next `edgefault shape`, or cleanup after
// a crash) can change or undo it.
type linkState struct {
	Target     Target     `json:"target"`
	Impairment Impairment `json:"impairment"`
	Backend    Backend    `json:"backend"`
	Plan       plan       `json:"plan"`
	// What the links were like before the first Apply, for Clear.
	PeerWasUp  bool   `json:"peerWasUp"`
	GSOMaxSegs uint32 `json:"gsoMaxSegs"`
	// What the shaper made and must remove.
	IFB      map[Direction]string        `json:"ifb,omitempty"`
	Tables   []tableRef                  `json:"tables,omitempty"`
	Delayers map[Direction]*delayerState `json:"delayers,omitempty"`
	// Stale delayers were replaced and are draining or gone.
	Stale []*delayerState `json:"stale,omitempty"`
	// Dirty: the last change failed half-way; the next one rebuilds all.
	Dirty   bool      `json:"dirty,omitempty"`
	Updated time.Time `json:"updated"`
}

type tableRef struct {
	Netns   string               `json:"netns"`
	NetnsID string               `json:"netnsID,omitempty"`
	Family  nftables.TableFamily `json:"family"`
	Name    string               `json:"name"`
}

func (t tableRef) key() string { return fmt.Sprint(t.Netns, "|", uint8(t.Family), "|", t.Name) }

func (t tableRef) entry() ledger.Entry {
	return ledger.Entry{Kind: ledger.KindNftable, Netns: t.Netns, NetnsID: t.NetnsID, Family: familyName(t.Family), Name: t.Name}
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(uint8(f))
}

// session is one Apply or Clear: open namespaces and links.
type session struct {
	s        *Shaper
	t        Target
	lc, pc   *nsConn
	l, p     netlink.Link
	lockFile *os.File
	state    string // path of the state file
}

func (s *Shaper) open(t Target) (*session, error) { return s.openMode(t, true) }

// openMode opens the target's namespaces and links; with lock it also
// takes the target's state lock (held until close), which every change
// needs and a read does not.
func (s *Shaper) openMode(t Target, lock bool) (*session, error) {
	if t.Link.Name == "" {
		return nil, fmt.Errorf("no interface given for the link to shape")
	}
	ss := &session{s: s, t: t}
	s.mu.Lock()
	if len(s.conns) >= maxConns {
		for k, c := range s.conns {
			c.Close()
			delete(s.conns, k)
		}
	}
	if len(s.locks) >= maxConns {
		for k, f := range s.locks {
			f.Close()
			delete(s.locks, k)
		}
	}
	var err error
	if ss.lc, err = s.conn(t.Link); err != nil {
		ss.close()
		return nil, err
	}
	if ss.l, err = ss.lc.link(t.Link.Name); err != nil {
		ss.close()
		return nil, err
	}
	if t.Peer != nil {
		if ss.pc, err = s.conn(*t.Peer); err != nil {
			ss.close()
			return nil, fmt.Errorf("peer of %s: %w", t.Link, err)
		}
		if ss.p, err = ss.pc.link(t.Peer.Name); err != nil {
			ss.close()
			return nil, fmt.Errorf("peer of %s: %w", t.Link, err)
		}
	}
	key := strings.ReplaceAll(ss.lc.id, ":", "_") + "_" + t.Link.Name
	ss.state = filepath.Join(s.stateDir, key+".json")
	if !lock {
		return ss, nil
	}
	lf := s.locks[ss.state]
	if lf == nil {
		if lf, err = os.OpenFile(ss.state+".lock", os.O_CREATE|os.O_RDWR, 0o644); err != nil {
			ss.close()
			return nil, fmt.Errorf("lock shaping state of %s: %w", t.Link, err)
		}
		if s.locks == nil {
			s.locks = map[string]*os.File{}
		}
		s.locks[ss.state] = lf
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		ss.close()
		return nil, err
	}
	ss.lockFile = lf
	return ss, nil
}

func (ss *session) close() {
	if ss.lockFile != nil {
		_ = syscall.Flock(int(ss.lockFile.Fd()), syscall.LOCK_UN)
	}
	ss.s.mu.Unlock()
}

func (ss *session) load() (*linkState, error) {
	b, err := os.ReadFile(ss.state)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st linkState
	// The first JSON value is the state; save may leave the tail of an
	// older, longer one behind it (see save).
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
		return nil, fmt.Errorf("shaping state %s is corrupt: %w (remove it after checking the link by hand)", ss.state, err)
	}
	return &st, nil
}

// save writes the state in place: one write at offset 0, then a truncate.
// Killed between the two, the file holds the new state followed by the
// tail of the old one, which load ignores. (Replacing the file by rename
// would be atomic too, but ext4 flushes data on every rename over an
// existing file, which made each change several times slower.)
func (ss *session) save(st *linkState) error {
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(ss.state, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("save shaping state: %w", err)
	}
	return f.Truncate(int64(len(b) + 1))
}

// Current returns the impairment in force on t, if any.
func (s *Shaper) Current(t Target) (Impairment, bool, error) {
	ss, err := s.openMode(t, false)
	if err != nil {
		return Impairment{}, false, err
	}
	defer ss.close()
	st, err := ss.load()
	if err != nil || st == nil {
		return Impairment{}, false, err
	}
	return st.Impairment, true, nil
}

// Apply puts imp on t, replacing whatever the shaper had put there. The
// change is made so that traffic is never unshaped in between: what the
// new impairment needs goes in before what it no longer needs comes out;
// qdisc trees change in place or are grafted whole, each nft table is
// replaced in one transaction, and a new delayer is bound before its rule
// goes in.
func (s *Shaper) Apply(ctx context.Context, t Target, imp Impairment) error {
	if err := imp.Validate(); err != nil {
		return err
	}
	if imp.Outage && imp.Direction == Egress && t.Peer == nil && !t.Forwards {
		return fmt.Errorf("an egress-only outage of %s needs its peer: without it the only place to cut is the node's own egress, which TCP treats as local failure and aborts connections after ~8 s", t.Link)
	}
	if imp.IsZero() {
		return s.Clear(ctx, t)
	}
	ss, err := s.open(t)
	if err != nil {
		return err
	}
	defer ss.close()
	old, err := ss.load()
	if err != nil {
		return err
	}
	st := &linkState{Target: t, Backend: s.backend, IFB: map[Direction]string{}, Delayers: map[Direction]*delayerState{}}
	st.Impairment = imp
	st.Plan = buildPlan(imp, planEnv{backend: s.backend, hasPeer: t.Peer != nil, forwards: t.Forwards})
	if err := ss.checkPlan(st.Plan); err != nil {
		return err
	}
	if old != nil {
		if !sameTarget(old.Target, t) {
			return fmt.Errorf("%s is shaped as %s: clear it as that first (same --peer), then apply", t.Link, old.Target)
		}
		st.PeerWasUp, st.GSOMaxSegs = old.PeerWasUp, old.GSOMaxSegs
		if (st.Plan.PeerDown && !old.Plan.PeerDown) || (st.Plan.CapGSO && !old.Plan.CapGSO) {
			// The link itself is about to change (peer down, GSO cap),
			// which only the state file remembers: mark it untrusted
			// first, so a crash in between still gets it restored.
			d := *old
			d.Dirty = true
			if err := ss.save(&d); err != nil {
				return err
			}
		}
	} else {
		if err := ss.checkForeign(); err != nil {
			return err
		}
		// Remember how the link was before anything changes, so Clear (or
		// cleanup after a crash in the middle of this) can restore it: a
		// peer taken down or a GSO cap are not in the ledger, and the state
		// file is what tells Clear there is something to clear.
		first := &linkState{Target: t, Backend: s.backend, GSOMaxSegs: ss.l.Attrs().GSOMaxSegs, Dirty: true,
			Plan: plan{Egress: dirPlan{Dir: Egress}, Ingress: dirPlan{Dir: Ingress}}}
		if ss.p != nil {
			first.PeerWasUp = ss.p.Attrs().Flags&net.FlagUp != 0
		}
		if err := s.ledger.Record(s.owner, ledger.Entry{Kind: ledger.KindState, Name: ss.state}); err != nil {
			return err
		}
		if err := ss.save(first); err != nil {
			return err
		}
		st.PeerWasUp, st.GSOMaxSegs = first.PeerWasUp, first.GSOMaxSegs
		// old stays nil: nothing of ours is on the link yet.
	}
	err = ss.transition(ctx, old, st)
	// Save even on error: the state must list what is there now.
	st.Dirty = err != nil
	if serr := ss.save(st); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shape %s: %w", t.Link, err)
	}
	if t.Peer == nil && !t.Forwards && st.Plan.Egress.needsDelayer() {
		s.log.Warn("egress delay without a peer holds the node's own packets: its TCP slows to a crawl (TCP small queues); give the link's peer", "link", t.Link.String())
	}
	s.log.Debug("shaped", "link", t.String(), "impairment", imp.String(), "backend", s.backend)
	return nil
}

// checkPlan refuses, before anything changes, what cannot be done
// faithfully on this link.
func (ss *session) checkPlan(p plan) error {
	eg := p.Egress
	if ss.p == nil && !ss.t.Forwards && eg.DropPercent > 0 {
		return fmt.Errorf("egress loss on %s needs its peer: without it the drops happen on the node's own egress, where its TCP resends at once and nothing is lost on the wire", ss.t.Link)
	}
	if ss.p != nil && ss.p.Attrs().MasterIndex != 0 && (eg.DropPercent > 0 || eg.needsDelayer()) {
		// The peer is a bridge port: its frames reach the inet hooks,
		// where egress loss and delay act, only through br_netfilter.
		if err := bridgeFilterEnabled(ss.pc.path); err != nil {
			return fmt.Errorf("egress loss or delay of %s at bridge port %s: %w (load br_netfilter with `modprobe br_netfilter` and set net.bridge.bridge-nf-call-iptables=1 in that namespace)", ss.t.Link, ss.t.Peer, err)
		}
	}
	return nil
}

// Clear removes what the shaper put on t and restores the link as it was
// before the first Apply. Clearing an unshaped link is not an error.
func (s *Shaper) Clear(ctx context.Context, t Target) error {
	ss, err := s.open(t)
	if err != nil {
		return err
	}
	old, err := ss.load()
	if err == nil && old != nil && !sameTarget(old.Target, t) {
		// Shaped with another peer (or none): clear what was recorded.
		ss.close()
		if ss, err = s.open(old.Target); err != nil {
			return fmt.Errorf("clear %s as it was shaped (%s): %w", t.Link, old.Target, err)
		}
	}
	defer ss.close()
	return ss.clear(ctx)
}

// sameTarget reports whether two targets name the same link and peer.
func sameTarget(a, b Target) bool {
	if a.Link != b.Link || a.Forwards != b.Forwards || (a.Peer == nil) != (b.Peer == nil) {
		return false
	}
	return a.Peer == nil || *a.Peer == *b.Peer
}

func (ss *session) clear(ctx context.Context) error {
	old, err := ss.load()
	if err != nil || old == nil {
		return err
	}
	st := &linkState{Target: ss.t, Backend: old.Backend, PeerWasUp: old.PeerWasUp, GSOMaxSegs: old.GSOMaxSegs,
		IFB: map[Direction]string{}, Delayers: map[Direction]*delayerState{}}
	st.Plan = plan{Egress: dirPlan{Dir: Egress}, Ingress: dirPlan{Dir: Ingress}}
	if err := ss.transition(ctx, old, st); err != nil {
		st.Dirty = true
		_ = ss.save(st)
		return fmt.Errorf("clear %s: %w", ss.t.Link, err)
	}
	if err := os.Remove(ss.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The lock file stays: removing a file others may be waiting to lock
	// would let two of them in at once. Cleanup removes the directory.
	// Retired delayers still draining stay in the ledger until gone.
	return ss.s.ledger.Forget(ss.s.owner, ledger.Entry{Kind: ledger.KindState, Name: ss.state})
}

// checkForeign refuses to touch devices that carry qdiscs edgefault did not
// put there: Clear could not restore them exactly.
func (ss *session) checkForeign() error {
	// Only the devices that will carry our qdiscs: the peer when it is
	// known (the link itself only gets its GSO setting changed), else the
	// link.
	type dev struct {
		c *nsConn
		l netlink.Link
	}
	devs := []dev{{ss.lc, ss.l}}
	if ss.p != nil {
		devs = []dev{{ss.pc, ss.p}}
	}
	for _, d := range devs {
		kind, err := rootKind(d.c, d.l.Attrs().Index)
		if err != nil {
			return err
		}
		if kind != "noqueue" && kind != "pfifo_fast" && kind != "mq" && kind != "fq_codel" {
			return fmt.Errorf("%s already has a %s qdisc that edgefault did not make; remove it first (`tc qdisc del dev %s root`) so Clear can restore the link exactly", d.l.Attrs().Name, kind, d.l.Attrs().Name)
		}
		if ing, err := hasIngressQdisc(d.c, d.l.Attrs().Index); err != nil {
			return err
		} else if ing {
			return fmt.Errorf("%s already has an ingress qdisc that edgefault did not make; remove it first", d.l.Attrs().Name)
		}
	}
	return nil
}
