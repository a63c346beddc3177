package shaper

import (
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
	"github.com/google/nftables/expr"
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
}

// WithBackend selects the backend (default BackendAuto).
func WithBackend(b Backend) Option { return func(o *options) { o.backend = b } }

// WithLedger records everything the shaper creates in l under owner
// (default: the default ledger, owner "shape").
func WithLedger(l *ledger.Ledger, owner string) Option {
	return func(o *options) { o.ledger, o.owner = l, owner }
}

// WithStateDir sets where per-link state files live.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

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
	Updated  time.Time                   `json:"updated"`
}

type tableRef struct {
	Netns  string               `json:"netns"`
	Family nftables.TableFamily `json:"family"`
	Name   string               `json:"name"`
}

func (t tableRef) entry() ledger.Entry {
	return ledger.Entry{Kind: ledger.KindNftable, Netns: t.Netns, Family: familyName(t.Family), Name: t.Name}
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
	if ss.lockFile, err = os.OpenFile(ss.state+".lock", os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		ss.close()
		return nil, fmt.Errorf("lock shaping state of %s: %w", t.Link, err)
	}
	if err := syscall.Flock(int(ss.lockFile.Fd()), syscall.LOCK_EX); err != nil {
		ss.close()
		return nil, err
	}
	return ss, nil
}

func (ss *session) close() {
	if ss.lockFile != nil {
		ss.lockFile.Close()
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
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("shaping state %s is corrupt: %w (remove it after checking the link by hand)", ss.state, err)
	}
	return &st, nil
}

func (ss *session) save(st *linkState) error {
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := ss.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, ss.state)
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
// change is made so that traffic is never unshaped in between: new qdiscs
// replace old ones in place, new nft tables replace old ones in one
// transaction, and a new delayer is bound before its rule goes in.
func (s *Shaper) Apply(ctx context.Context, t Target, imp Impairment) error {
	if err := imp.Validate(); err != nil {
		return err
	}
	if imp.Outage && imp.Direction == Egress && t.Peer == nil {
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
	if old != nil {
		st.PeerWasUp, st.GSOMaxSegs = old.PeerWasUp, old.GSOMaxSegs
	} else {
		if err := ss.checkForeign(); err != nil {
			return err
		}
		st.GSOMaxSegs = ss.l.Attrs().GSOMaxSegs
		if ss.p != nil {
			st.PeerWasUp = ss.p.Attrs().Flags&net.FlagUp != 0
		}
		if err := s.ledger.Record(s.owner, ledger.Entry{Kind: ledger.KindState, Name: ss.state}); err != nil {
			return err
		}
	}
	st.Impairment = imp
	st.Plan = buildPlan(imp, planEnv{backend: s.backend, hasPeer: t.Peer != nil})
	err = ss.transition(ctx, old, st)
	// Save even on error: the state must describe what is there now.
	if serr := ss.save(st); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shape %s: %w", t.Link, err)
	}
	s.log.Debug("shaped", "link", t.String(), "impairment", imp.String(), "backend", s.backend)
	return nil
}

// Clear removes what the shaper put on t and restores the link as it was
// before the first Apply. Clearing an unshaped link is not an error.
func (s *Shaper) Clear(ctx context.Context, t Target) error {
	ss, err := s.open(t)
	if err != nil {
		return err
	}
	defer ss.close()
	return ss.clear(ctx)
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
		_ = ss.save(st)
		return fmt.Errorf("clear %s: %w", ss.t.Link, err)
	}
	// Restore what the first Apply found.
	if ss.p != nil && old.PeerWasUp {
		if err := ss.pc.nl.LinkSetUp(ss.p); err != nil {
			return fmt.Errorf("bring %s back up: %w", ss.t.Peer, err)
		}
	}
	if ss.l.Attrs().GSOMaxSegs != old.GSOMaxSegs && old.GSOMaxSegs != 0 {
		if err := ss.lc.nl.LinkSetGSOMaxSegs(ss.l, int(old.GSOMaxSegs)); err != nil {
			return fmt.Errorf("restore gso_max_segs of %s: %w", ss.t.Link, err)
		}
	}
	if err := os.Remove(ss.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	os.Remove(ss.state + ".lock")
	return ss.s.ledger.Forget(ss.s.owner, ledger.Entry{Kind: ledger.KindState, Name: ss.state})
}

// checkForeign refuses to touch devices that carry qdiscs edgefault did not
// put there: Clear could not restore them exactly.
func (ss *session) checkForeign() error {
	devs := []struct {
		c *nsConn
		l netlink.Link
	}{{ss.lc, ss.l}}
	if ss.p != nil {
		devs = []struct {
			c *nsConn
			l netlink.Link
		}{{ss.pc, ss.p}, {ss.lc, ss.l}}
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

// transition moves the link from old (nil: unshaped) to st.
func (ss *session) transition(ctx context.Context, old, st *linkState) error {
	s := ss.s
	oldPlan := plan{}
	if old != nil {
		oldPlan = old.Plan
	}
	// 1. A cut comes first, so nothing passes half-configured.
	if st.Plan.PeerDown && ss.p != nil {
		if err := ss.pc.nl.LinkSetDown(ss.p); err != nil {
			return fmt.Errorf("take %s down for the outage: %w", ss.t.Peer, err)
		}
	}
	if st.Plan.CapGSO && ss.l.Attrs().GSOMaxSegs != 1 {
		if err := ss.lc.nl.LinkSetGSOMaxSegs(ss.l, 1); err != nil {
			return fmt.Errorf("cap gso_max_segs of %s: %w", ss.t.Link, err)
		}
	}
	// 2. Rate (and netem) qdiscs.
	for _, d := range []Direction{Egress, Ingress} {
		var oldIFB string
		var odp *dirPlan
		if old != nil {
			oldIFB = old.IFB[d]
			odp = oldPlan.dir(d)
		}
		ifb, err := ss.applyTC(d, st.Plan.dir(d), odp, oldIFB)
		if ifb != "" {
			st.IFB[d] = ifb
		}
		if err != nil {
			return err
		}
	}
	// 3. Delayers for the new plan (bound before their rules exist).
	var stale []*delayerState
	for _, d := range []Direction{Egress, Ingress} {
		dp := st.Plan.dir(d)
		var od *delayerState
		if old != nil {
			od = old.Delayers[d]
		}
		if !dp.needsDelayer() {
			if od != nil {
				stale = append(stale, od)
			}
			continue
		}
		nsPath, dev := ss.delayPoint(d)
		if d == Egress && ss.p != nil && ss.p.Attrs().MasterIndex != 0 {
			// The peer is a bridge port: its frames reach the inet hooks
			// only through br_netfilter.
			if err := bridgeFilterEnabled(nsPath); err != nil {
				return fmt.Errorf("delay of %s's egress at bridge port %s: %w (set net.bridge.bridge-nf-call-iptables=1 in that namespace)", ss.t.Link, ss.t.Peer, err)
			}
		}
		if od != nil && od.Delay == dp.Delay && od.Jitter == dp.Jitter && od.Netns == nsPath && od.Alive() {
			st.Delayers[d] = od
			continue
		}
		q, err := ss.queueNum(d, dev, od)
		if err != nil {
			return err
		}
		nd, err := s.startDelayer(ctx, nsPath, q, dp.Delay, dp.Jitter)
		if err != nil {
			return err
		}
		st.Delayers[d] = nd
		if od != nil {
			stale = append(stale, od)
		}
	}
	// 4. nft tables: loss, per-direction cuts, delay rules.
	if err := ss.applyNft(old, st); err != nil {
		return err
	}
	// 5. Old delayers drain on time and exit.
	for _, od := range stale {
		if err := s.stopDelayer(od); err != nil {
			s.log.Warn("stop delayer", "err", err)
		}
	}
	// 6. A restored link comes back last.
	if !st.Plan.PeerDown && oldPlan.PeerDown && ss.p != nil && (old == nil || old.PeerWasUp) {
		if err := ss.pc.nl.LinkSetUp(ss.p); err != nil {
			return fmt.Errorf("bring %s back up: %w", ss.t.Peer, err)
		}
	}
	if !st.Plan.CapGSO && oldPlan.CapGSO && st.GSOMaxSegs != 0 {
		if err := ss.lc.nl.LinkSetGSOMaxSegs(ss.l, int(st.GSOMaxSegs)); err != nil {
			return fmt.Errorf("restore gso_max_segs of %s: %w", ss.t.Link, err)
		}
	}
	return nil
}

// Alive reports whether the helper is still running.
func (d *delayerState) Alive() bool { return d.entry().Alive() }

// queueNum picks the NFQUEUE number for direction d's delayer: unique per
// device and direction, alternating between two slots so a new delayer can
// bind while the old one still serves.
func (ss *session) queueNum(d Direction, dev netlink.Link, old *delayerState) (uint16, error) {
	idx := dev.Attrs().Index
	if idx > 16000 {
		return 0, fmt.Errorf("interface index %d too large for a queue number", idx)
	}
	base := uint16(idx*4 + 1000)
	if d == Ingress {
		base += 2
	}
	if old != nil && old.Queue == base {
		return base + 1, nil
	}
	return base, nil
}

// delayPoint is where direction d is delayed: the namespace path and the
// device whose index keys the queue number.
func (ss *session) delayPoint(d Direction) (string, netlink.Link) {
	if d == Egress && ss.p != nil {
		return ss.pc.path, ss.p
	}
	return ss.lc.path, ss.l
}

// applyTC installs (or removes) the qdisc tree for one direction and
// returns the ifb device in use, if any.
func (ss *session) applyTC(d Direction, dp, old *dirPlan, oldIFB string) (string, error) {
	s := ss.s
	// Where does this direction's queue live?
	//   ingress with peer: the peer's egress (root qdisc on the peer)
	//   egress with peer:  an ifb fed from the peer's ingress
	//   ingress, no peer:  an ifb fed from the link's ingress
	//   egress, no peer:   the link's own root qdisc
	var (
		c      = ss.lc
		dev    = ss.l
		useIFB = false
	)
	switch {
	case d == Ingress && ss.p != nil:
		c, dev = ss.pc, ss.p
	case d == Egress && ss.p != nil:
		c, dev, useIFB = ss.pc, ss.p, true
	case d == Ingress:
		useIFB = true
	}
	nsName := c.path
	if !dp.needsTC() {
		if old == nil || !old.needsTC() {
			return "", nil
		}
		if useIFB {
			return "", ss.removeIFB(c, dev, oldIFB)
		}
		if err := removeRoot(c, dev.Attrs().Index); err != nil {
			return "", err
		}
		return "", s.ledger.Forget(s.owner, ledger.Entry{Kind: ledger.KindQdisc, Netns: nsName, Name: dev.Attrs().Name, Handle: "root"})
	}
	if dp.tcEqual(old) && (!useIFB || oldIFB != "") {
		dp.Major = old.Major
		return oldIFB, nil
	}
	target := dev
	ifb := ""
	if useIFB {
		ifb = ifbName(c.id, dev.Attrs().Name)
		l, err := c.nl.LinkByName(ifb)
		if err != nil {
			if err := s.ledger.Record(s.owner, ledger.Entry{Kind: ledger.KindLink, Netns: nsName, Name: ifb}); err != nil {
				return "", err
			}
			if err := c.nl.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: ifb, TxQLen: 1000}}); err != nil {
				return "", fmt.Errorf("create ifb %s: %w", ifb, err)
			}
			if l, err = c.nl.LinkByName(ifb); err != nil {
				return "", err
			}
			if err := c.nl.LinkSetUp(l); err != nil {
				return "", err
			}
		}
		target = l
	} else if err := s.ledger.Record(s.owner, ledger.Entry{Kind: ledger.KindQdisc, Netns: nsName, Name: dev.Attrs().Name, Handle: "root"}); err != nil {
		return "", err
	}
	// Change the tree in place where its shape allows, else graft a new
	// one under the other major.
	dp.Major = 1
	if old != nil && old.Major != 0 && (oldIFB != "" || !useIFB) {
		dp.Major = old.Major
		if !sameShape(old, dp) {
			dp.Major = otherMajor(old.Major)
		}
	}
	if err := installTree(c, buildTree(target.Attrs().Index, dp, dp.Major)); err != nil {
		return ifb, fmt.Errorf("%s on %s: %w", d, target.Attrs().Name, err)
	}
	if useIFB {
		ok, err := hasIngressQdisc(c, dev.Attrs().Index)
		if err != nil {
			return ifb, err
		}
		if !ok {
			if err := s.ledger.Record(s.owner, ledger.Entry{Kind: ledger.KindQdisc, Netns: nsName, Name: dev.Attrs().Name, Handle: "ingress"}); err != nil {
				return ifb, err
			}
			if err := c.nl.QdiscAdd(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: hIngress}}); err != nil {
				return ifb, fmt.Errorf("ingress qdisc on %s: %w", dev.Attrs().Name, err)
			}
		}
		if err := c.nl.FilterReplace(redirectFilter(dev.Attrs().Index, target.Attrs().Index)); err != nil {
			return ifb, fmt.Errorf("redirect %s to %s: %w", dev.Attrs().Name, ifb, err)
		}
	}
	return ifb, nil
}

func (ss *session) removeIFB(c *nsConn, dev netlink.Link, ifb string) error {
	s := ss.s
	// Stop feeding the ifb first, then remove it.
	err := c.nl.QdiscDel(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: hIngress}})
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("remove ingress qdisc of %s: %w", dev.Attrs().Name, err)
	}
	_ = s.ledger.Forget(s.owner, ledger.Entry{Kind: ledger.KindQdisc, Netns: c.path, Name: dev.Attrs().Name, Handle: "ingress"})
	if ifb == "" {
		return nil
	}
	if l, err := c.nl.LinkByName(ifb); err == nil {
		if err := c.nl.LinkDel(l); err != nil {
			return fmt.Errorf("remove %s: %w", ifb, err)
		}
	}
	return s.ledger.Forget(s.owner, ledger.Entry{Kind: ledger.KindLink, Netns: c.path, Name: ifb})
}

// applyNft builds every nft table the new state needs, replaces each in one
// transaction, and removes tables the old state had and the new one lacks.
func (ss *session) applyNft(old, st *linkState) error {
	s := ss.s
	type tkey struct {
		c   *nsConn
		fam nftables.TableFamily
		dev string
	}
	tables := map[tkey][]nftChain{}
	add := func(k tkey, ch nftChain) {
		for i := range tables[k] {
			if tables[k][i].name == ch.name {
				tables[k][i].rules = append(tables[k][i].rules, ch.rules...)
				return
			}
		}
		tables[k] = append(tables[k], ch)
	}
	lname, mac := ss.l.Attrs().Name, ss.l.Attrs().HardwareAddr
	for _, d := range []Direction{Egress, Ingress} {
		dp := st.Plan.dir(d)
		if dp.DropPercent > 0 {
			// Drops at the far end: what the link sends is dropped where
			// its peer receives it, what it receives where the peer sends
			// it. What the link sends is matched in the peer's prerouting
			// hook by the link's MAC, like the delay: the peer's netdev
			// ingress hook is skipped by packets that an ifb (the egress
			// rate limiter) hands back, measured on kernel 6.18.
			switch {
			case ss.p != nil && d == Egress:
				k := tkey{ss.pc, nftables.TableFamilyINet, ss.p.Attrs().Name}
				add(k, nftChain{name: "pre", hook: nftables.ChainHookPrerouting,
					rules: dropRules(dp.DropPercent, dp.Targets, d, nftables.TableFamilyINet, matchEtherSaddr(mac))})
			case ss.p != nil:
				k := tkey{ss.pc, nftables.TableFamilyNetdev, ss.p.Attrs().Name}
				add(k, nftChain{name: "out", hook: nftables.ChainHookEgress, device: k.dev,
					rules: dropRules(dp.DropPercent, dp.Targets, d, nftables.TableFamilyNetdev, nil)})
			case d == Egress:
				k := tkey{ss.lc, nftables.TableFamilyNetdev, lname}
				add(k, nftChain{name: "out", hook: nftables.ChainHookEgress, device: lname,
					rules: dropRules(dp.DropPercent, dp.Targets, d, nftables.TableFamilyNetdev, nil)})
			default:
				k := tkey{ss.lc, nftables.TableFamilyNetdev, lname}
				add(k, nftChain{name: "in", hook: nftables.ChainHookIngress, device: lname,
					rules: dropRules(dp.DropPercent, dp.Targets, d, nftables.TableFamilyNetdev, nil)})
			}
		}
		if dl := st.Delayers[d]; dl != nil {
			q := queueExpr(dl.Queue)
			switch {
			case d == Ingress:
				// Delay on receive, in the link's own namespace: the
				// receiving side's hooks hold packets without throttling
				// any sender's socket.
				add(tkey{ss.lc, nftables.TableFamilyINet, lname}, nftChain{name: "pre", hook: nftables.ChainHookPrerouting,
					rules: withTargets(matchIfname(true, lname), dp.Targets, d, nftables.TableFamilyINet, []expr.Any{&expr.Counter{}, q})})
			case ss.p != nil:
				// Delay what the link sends where its peer receives it.
				add(tkey{ss.pc, nftables.TableFamilyINet, ss.p.Attrs().Name}, nftChain{name: "pre", hook: nftables.ChainHookPrerouting,
					rules: withTargets(matchEtherSaddr(mac), dp.Targets, d, nftables.TableFamilyINet, []expr.Any{&expr.Counter{}, q})})
			default:
				// No peer: postrouting on the link itself. Accurate for
				// forwarded traffic; the node's own TCP is throttled by
				// TCP small queues (see docs/shaping.md).
				add(tkey{ss.lc, nftables.TableFamilyINet, lname}, nftChain{name: "post", hook: nftables.ChainHookPostrouting,
					rules: withTargets(matchIfname(false, lname), dp.Targets, d, nftables.TableFamilyINet, []expr.Any{&expr.Counter{}, q})})
			}
		}
	}
	seen := map[string]bool{}
	for k, chains := range tables {
		ref := tableRef{Netns: k.c.path, Family: k.fam, Name: tableName(k.dev)}
		if err := s.ledger.Record(s.owner, ref.entry()); err != nil {
			return err
		}
		if err := replaceTable(k.c, k.fam, ref.Name, chains); err != nil {
			return err
		}
		st.Tables = append(st.Tables, ref)
		seen[fmt.Sprint(ref)] = true
	}
	if old != nil {
		for _, ref := range old.Tables {
			if seen[fmt.Sprint(ref)] {
				continue
			}
			c := ss.lc
			if ss.pc != nil && ref.Netns == ss.pc.path {
				c = ss.pc
			}
			if err := deleteTable(c, ref.Family, ref.Name); err != nil {
				return err
			}
			if err := s.ledger.Forget(s.owner, ref.entry()); err != nil {
				return err
			}
		}
	}
	return nil
}
