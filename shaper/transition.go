package shaper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/ledger"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
)

// transition moves the link from old (nil: unshaped) to st, in an order
// that never lets traffic pass unshaped: what the new impairment needs is
// put in place before what it no longer needs is taken away. st's lists of
// objects (ifbs, delayers, tables) are kept true as it goes, so a failure
// half-way leaves a state that the next Apply or Clear can finish from.
func (ss *session) transition(ctx context.Context, old, st *linkState) error {
	s := ss.s
	var oldPlan plan
	if old != nil {
		oldPlan = old.Plan
		for d, n := range old.IFB {
			st.IFB[d] = n
		}
		for d, dl := range old.Delayers {
			st.Delayers[d] = dl
		}
		st.Stale = append(st.Stale, old.Stale...)
		st.Tables = append(st.Tables, old.Tables...)
	}
	// A failed transition leaves the recorded plan untrustworthy: rebuild
	// everything instead of keeping what looks unchanged.
	trust := old != nil && !old.Dirty
	st.pruneStale(s)

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
	// 2. Rate (and netem) qdiscs that the new plan needs.
	for _, d := range []Direction{Egress, Ingress} {
		var odp *dirPlan
		if trust {
			odp = oldPlan.dir(d)
		}
		if err := ss.installTC(d, st, odp, old != nil && !trust); err != nil {
			return err
		}
	}
	// 3. Delayers for the new plan, bound before their rules exist.
	var retire []*delayerState
	for _, d := range []Direction{Egress, Ingress} {
		dp := st.Plan.dir(d)
		cur := st.Delayers[d]
		if !dp.needsDelayer() {
			if cur != nil {
				retire = append(retire, cur)
			}
			continue
		}
		nsPath, dev := ss.delayPoint(d)
		if trust && cur != nil && cur.args() == dp.delayerArgs() && cur.Netns == nsPath && cur.Alive() {
			continue
		}
		nd, err := ss.startDelayerFor(ctx, d, dp, nsPath, dev, cur, st.Stale)
		if err != nil {
			return err
		}
		st.Delayers[d] = nd
		if cur != nil {
			// Still fed by the old rule until step 4 replaces it.
			st.Stale = append(st.Stale, cur)
		}
	}
	for _, dl := range retire {
		st.Stale = append(st.Stale, dl)
	}
	for d := range st.Delayers {
		if !st.Plan.dir(d).needsDelayer() {
			delete(st.Delayers, d)
		}
	}
	// 4. nft tables: loss, per-direction cuts, delay rules.
	if err := ss.applyNft(st); err != nil {
		return err
	}
	// 5. Qdiscs the new plan no longer needs (and, after a failure, any
	// that might be there).
	for _, d := range []Direction{Egress, Ingress} {
		had := old != nil && (!trust || oldPlan.dir(d).needsTC())
		if err := ss.removeTC(d, st, had); err != nil {
			return err
		}
	}
	// 6. Retired delayers drain what they hold on time and exit by
	// themselves; they stay listed until they are gone.
	for _, dl := range st.Stale {
		if dl.Alive() {
			_ = syscall.Kill(dl.PID, syscall.SIGTERM)
		}
	}
	// 7. A restored link comes back last, as the first Apply found it.
	if !st.Plan.PeerDown && ss.p != nil && st.PeerWasUp && old != nil && (!trust || oldPlan.PeerDown) {
		if p, err := ss.pc.nl.LinkByIndex(ss.p.Attrs().Index); err == nil && p.Attrs().Flags&net.FlagUp == 0 {
			if err := ss.pc.nl.LinkSetUp(ss.p); err != nil {
				return fmt.Errorf("bring %s back up: %w", ss.t.Peer, err)
			}
		}
	}
	if !st.Plan.CapGSO && st.GSOMaxSegs != 0 && old != nil && (!trust || oldPlan.CapGSO) {
		if l, err := ss.lc.nl.LinkByIndex(ss.l.Attrs().Index); err == nil && l.Attrs().GSOMaxSegs != st.GSOMaxSegs {
			if err := ss.lc.nl.LinkSetGSOMaxSegs(ss.l, int(st.GSOMaxSegs)); err != nil {
				return fmt.Errorf("restore gso_max_segs of %s: %w", ss.t.Link, err)
			}
		}
	}
	return nil
}

// pruneStale forgets retired delayers that have exited.
func (st *linkState) pruneStale(s *Shaper) {
	kept := st.Stale[:0]
	for _, dl := range st.Stale {
		if dl.Alive() {
			kept = append(kept, dl)
			continue
		}
		_ = s.ledger.Forget(s.owner, dl.entry())
	}
	st.Stale = kept
}

// Alive reports whether the helper is still running.
func (d *delayerState) Alive() bool { return d.entry().Alive() }

// startDelayerFor starts direction d's delayer on one of the two queue
// numbers kept for that device and direction (unique per device and
// direction), so a new delayer can bind while the one it replaces still
// serves. A queue still held by a delayer that is draining (one this
// state may not know about, retired by an earlier Clear) is waited for.
func (ss *session) startDelayerFor(ctx context.Context, d Direction, dp *dirPlan, nsPath string, dev netlink.Link, cur *delayerState, stale []*delayerState) (*delayerState, error) {
	idx := dev.Attrs().Index
	if idx > 16000 {
		return nil, fmt.Errorf("interface index %d too large for a queue number", idx)
	}
	base := uint16(idx*4 + 1000)
	if d == Ingress {
		base += 2
	}
	busy := func(q uint16) bool {
		if cur != nil && cur.Queue == q && cur.Alive() {
			return true
		}
		for _, dl := range stale {
			if dl.Queue == q && dl.Netns == nsPath && dl.Alive() {
				return true
			}
		}
		return false
	}
	slots := []uint16{base, base + 1}
	if busy(base) {
		slots = []uint16{base + 1, base}
	}
	// Longest a retired delayer drains: its delay and jitter (at most a
	// minute each), plus slack.
	start := time.Now()
	deadline := start.Add(2*time.Minute + 5*time.Second)
	signalled := false
	for {
		// Which queues are bound in that namespace right now: no helper is
		// started just to find a queue busy.
		bound, berr := boundQueues(nsPath)
		for _, q := range slots {
			if cur != nil && cur.Queue == q && cur.Alive() {
				continue // the one being replaced: it serves until the switch
			}
			if berr == nil && bound[q] {
				continue
			}
			nd, err := ss.s.startDelayer(ctx, nsPath, q, dp.delayerArgs())
			if err == nil {
				return nd, nil
			}
			if !errors.Is(err, errQueueBusy) {
				return nil, err
			}
		}
		if !signalled && time.Since(start) > time.Second {
			// A delayer that no state knows (its shaper was killed) may
			// hold the slot for ever: ask the ones the ledger knows to go.
			ss.s.retireOrphans(nsPath, []uint16{base, base + 1}, cur)
			signalled = true
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("queues %d and %d in %s stay held by other processes", base, base+1, nsPath)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// boundQueues lists the NFQUEUE numbers bound in the namespace at nsPath.
func boundQueues(nsPath string) (map[uint16]bool, error) {
	m := map[uint16]bool{}
	err := inNetns(nsPath, func() error {
		// thread-self: /proc/net would show the main thread's namespace.
		b, err := os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					m[uint16(n)] = true
				}
			}
		}
		return nil
	})
	return m, err
}

// retireOrphans asks delayers recorded in the ledger for these queues in
// nsPath, other than cur, to drain and exit.
func (s *Shaper) retireOrphans(nsPath string, queues []uint16, cur *delayerState) {
	entries, err := s.ledger.Entries(s.owner)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Kind != ledger.KindProcess || (cur != nil && e.PID == cur.PID) {
			continue
		}
		for _, q := range queues {
			if e.Name == delayerName(q, nsPath) && e.Alive() {
				_ = syscall.Kill(e.PID, syscall.SIGTERM)
			}
		}
	}
}

func (d *delayerState) netns() string {
	if d == nil {
		return ""
	}
	return d.Netns
}

// delayPoint is where direction d is delayed: the namespace path and the
// device whose index keys the queue number.
func (ss *session) delayPoint(d Direction) (string, netlink.Link) {
	if d == Egress && ss.p != nil {
		return ss.pc.path, ss.p
	}
	return ss.lc.path, ss.l
}

// tcPlace is where direction d's queue lives:
//
//	ingress with peer: the peer's egress (root qdisc on the peer)
//	egress with peer:  an ifb fed from the peer's ingress
//	ingress, no peer:  an ifb fed from the link's ingress
//	egress, no peer:   the link's own root qdisc
func (ss *session) tcPlace(d Direction) (c *nsConn, dev netlink.Link, useIFB bool) {
	switch {
	case d == Ingress && ss.p != nil:
		return ss.pc, ss.p, false
	case d == Egress && ss.p != nil:
		return ss.pc, ss.p, true
	case d == Ingress:
		return ss.lc, ss.l, true
	}
	return ss.lc, ss.l, false
}

func (ss *session) entry(kind string, c *nsConn, name, handle string) ledger.Entry {
	return ledger.Entry{Kind: kind, Netns: c.path, NetnsID: c.id, Name: name, Handle: handle}
}

// installTC puts the qdisc tree for direction d in place if the plan needs
// one; old is the previous plan for d when it can be trusted, suspect says
// an untrusted one may have left something.
func (ss *session) installTC(d Direction, st *linkState, old *dirPlan, suspect bool) error {
	s := ss.s
	dp := st.Plan.dir(d)
	if !dp.needsTC() {
		return nil
	}
	c, dev, useIFB := ss.tcPlace(d)
	oldIFB := st.IFB[d]
	if old != nil && dp.tcEqual(old) && (!useIFB || oldIFB != "") {
		dp.Major = old.Major
		return nil
	}
	target := dev
	if useIFB {
		ifb := ifbName(c.id, dev.Attrs().Name)
		l, err := c.nl.LinkByName(ifb)
		if err != nil {
			if err := s.ledger.Record(s.owner, ss.entry(ledger.KindLink, c, ifb, "")); err != nil {
				return err
			}
			if err := c.nl.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: ifb, TxQLen: 1000}}); err != nil {
				return fmt.Errorf("create ifb %s: %w", ifb, err)
			}
			st.IFB[d] = ifb
			if l, err = c.nl.LinkByName(ifb); err != nil {
				return err
			}
			if err := c.nl.LinkSetUp(l); err != nil {
				return err
			}
		}
		st.IFB[d] = ifb
		target = l
	} else if err := s.ledger.Record(s.owner, ss.entry(ledger.KindQdisc, c, dev.Attrs().Name, "root")); err != nil {
		return err
	}
	// Change the tree in place where its shape allows, else graft a new
	// one under the other major.
	dp.Major = 1
	switch {
	case old != nil && old.Major != 0 && (oldIFB != "" || !useIFB):
		dp.Major = old.Major
		if !sameShape(old, dp) {
			dp.Major = otherMajor(old.Major)
		}
	case suspect:
		// After a failed change something of ours may be there under
		// either major: graft over it rather than guess.
		if _, h, err := qdiscInfo(c, target.Attrs().Index, netlink.HANDLE_ROOT); err == nil && h>>16 == 1 {
			dp.Major = 2
		}
	}
	if err := installTree(c, buildTree(target.Attrs().Index, dp, dp.Major)); err != nil {
		return fmt.Errorf("%s on %s: %w", d, target.Attrs().Name, err)
	}
	if !useIFB {
		return nil
	}
	ok, err := hasIngressQdisc(c, dev.Attrs().Index)
	if err != nil {
		return err
	}
	if !ok {
		if err := s.ledger.Record(s.owner, ss.entry(ledger.KindQdisc, c, dev.Attrs().Name, "ingress")); err != nil {
			return err
		}
		if err := c.nl.QdiscAdd(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: hIngress}}); err != nil {
			return fmt.Errorf("ingress qdisc on %s: %w", dev.Attrs().Name, err)
		}
	} else if old != nil {
		// A trusted earlier change installed the redirect with the qdisc.
		return nil
	} else if fs, err := c.nl.FilterList(dev, netlink.HANDLE_INGRESS); err == nil && len(fs) > 0 {
		// Untrusted (after a failure): the qdisc is there; so is a filter.
		return nil
	}
	if err := c.nl.FilterAdd(redirectFilter(dev.Attrs().Index, target.Attrs().Index)); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", dev.Attrs().Name, st.IFB[d], err)
	}
	return nil
}

// removeTC takes away direction d's qdiscs if the plan no longer needs
// them; had says some may be there.
func (ss *session) removeTC(d Direction, st *linkState, had bool) error {
	s := ss.s
	if !had || st.Plan.dir(d).needsTC() {
		return nil
	}
	c, dev, useIFB := ss.tcPlace(d)
	if !useIFB {
		if err := removeRoot(c, dev.Attrs().Index); err != nil {
			return err
		}
		return s.ledger.Forget(s.owner, ss.entry(ledger.KindQdisc, c, dev.Attrs().Name, "root"))
	}
	ifb := st.IFB[d]
	if ifb == "" {
		// Unknown after a failure: the name is derived, so look for it.
		ifb = ifbName(c.id, dev.Attrs().Name)
	}
	// Stop feeding the ifb first, then remove it.
	err := c.nl.QdiscDel(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: hIngress}})
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("remove ingress qdisc of %s: %w", dev.Attrs().Name, err)
	}
	if err := s.ledger.Forget(s.owner, ss.entry(ledger.KindQdisc, c, dev.Attrs().Name, "ingress")); err != nil {
		return err
	}
	if l, err := c.nl.LinkByName(ifb); err == nil {
		if err := c.nl.LinkDel(l); err != nil {
			return fmt.Errorf("remove %s: %w", ifb, err)
		}
	}
	delete(st.IFB, d)
	return s.ledger.Forget(s.owner, ss.entry(ledger.KindLink, c, ifb, ""))
}

// applyNft builds every nft table the new state needs, replaces each in one
// transaction, and removes tables the state had and no longer needs.
// st.Tables lists what was there on entry and what is there on return.
func (ss *session) applyNft(st *linkState) error {
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
			case dp.needsTC():
				// What arrives goes through the ifb of the ingress rate
				// limiter first and comes back past the netdev ingress
				// hook: drop it in prerouting (a routed link; a bridge's
				// port forwards such packets on unseen, see docs).
				k := tkey{ss.lc, nftables.TableFamilyINet, lname}
				add(k, nftChain{name: "pre", hook: nftables.ChainHookPrerouting,
					rules: dropRules(dp.DropPercent, dp.Targets, d, nftables.TableFamilyINet, matchIfname(true, lname))})
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
	had := st.Tables
	st.Tables = nil
	seen := map[string]bool{}
	for _, ref := range had { // until replaced or removed, they are there
		if !seen[ref.key()] {
			seen[ref.key()] = true
			st.Tables = append(st.Tables, ref)
		}
	}
	want := map[string]bool{}
	for k, chains := range tables {
		ref := tableRef{Netns: k.c.path, NetnsID: k.c.id, Family: k.fam, Name: tableName(k.dev)}
		want[ref.key()] = true
		if err := s.ledger.Record(s.owner, ref.entry()); err != nil {
			return err
		}
		if !seen[ref.key()] {
			seen[ref.key()] = true
			st.Tables = append(st.Tables, ref)
		}
		if err := replaceTable(k.c, k.fam, ref.Name, chains); err != nil {
			return err
		}
	}
	kept := st.Tables[:0]
	var errs []error
	for _, ref := range st.Tables {
		if want[ref.key()] {
			kept = append(kept, ref)
			continue
		}
		c := ss.lc
		if ss.pc != nil && ref.Netns == ss.pc.path {
			c = ss.pc
		}
		if err := deleteTable(c, ref.Family, ref.Name); err != nil {
			errs = append(errs, err)
			kept = append(kept, ref)
			continue
		}
		if err := s.ledger.Forget(s.owner, ref.entry()); err != nil {
			errs = append(errs, err)
		}
	}
	st.Tables = kept
	return errors.Join(errs...)
}
