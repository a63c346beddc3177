package shaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/edgefault/edgefault/ledger"
)

// Forget is Clear for a target whose link may be gone, as a pod's veth
// goes with its pod: its qdiscs went with it, but not what the shaper put
// beside it in the namespace (ifb devices, nftables tables matching its
// name, delayers), which Forget removes, with its state. A link that is
// there is cleared.
func (s *Shaper) Forget(ctx context.Context, t Target) error {
	err := s.Clear(ctx, t)
	if err == nil || !errors.Is(err, ErrLinkGone) || t.Peer != nil {
		// With a peer, what the shaper made is in the peer's namespace,
		// and a missing link may be the peer: not Forget's to judge.
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock() // the connection stays open (and cached) throughout
	c, err := s.conn(t.Link)
	if err != nil {
		return fmt.Errorf("forget %s: %w", t.Link, err)
	}
	if _, err := c.link(t.Link.Name); !errors.Is(err, ErrLinkGone) {
		return fmt.Errorf("forget %s: the link is there after all (%v): clear it instead", t.Link, err)
	}
	ss := &session{s: s, t: t, lc: c, state: filepath.Join(s.stateDir, strings.ReplaceAll(c.id, ":", "_")+"_"+t.Link.Name+".json")}
	st, err := ss.load()
	if err != nil || st == nil {
		return err
	}
	var errs []error
	for _, name := range st.IFB {
		if l, err := c.nl.LinkByName(name); err == nil {
			if err := c.nl.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
				continue
			}
		}
		errs = append(errs, s.ledger.Forget(s.owner, ss.entry(ledger.KindLink, c, name, "")))
	}
	for _, ref := range st.Tables {
		if ref.Netns != c.path {
			continue // a peer's namespace: Forget has no peer
		}
		if err := deleteTable(c, ref.Family, ref.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.ledger.Forget(s.owner, ref.entry()))
	}
	for _, d := range st.Delayers {
		errs = append(errs, s.stopDelayer(d))
	}
	for _, d := range st.Stale {
		errs = append(errs, s.stopDelayer(d))
	}
	// The qdiscs recorded on the link went with it.
	if es, err := s.ledger.Entries(s.owner); err == nil {
		for _, e := range es {
			if e.Kind == ledger.KindQdisc && e.Netns == c.path && e.Name == t.Link.Name {
				errs = append(errs, s.ledger.Forget(s.owner, e))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("forget %s: %w", t.Link, err)
	}
	if err := os.Remove(ss.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return s.ledger.Forget(s.owner, ledger.Entry{Kind: ledger.KindState, Name: ss.state})
}
