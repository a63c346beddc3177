package shaper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/edgefault/edgefault/ledger"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Removers returns ledger removers for what the shaper creates: links (ifb
// devices), qdiscs and nft tables. Objects whose namespace is gone count as
// removed.
func Removers() map[string]ledger.Remover {
	// open returns nil (and no error) when the namespace is gone or the
	// path now names a different namespace than the one recorded: then
	// the object went with it, and nothing else may be touched.
	open := func(e ledger.Entry) (*nsConn, error) {
		c, err := openNS(Link{Netns: e.Netns, Name: e.Name})
		if err != nil && isGone(e.Netns) {
			return nil, nil
		}
		if err == nil && e.NetnsID != "" && c.id != e.NetnsID {
			c.Close()
			return nil, nil
		}
		return c, err
	}
	// onLink runs fn on the entry's link, if it is still there.
	onLink := func(e ledger.Entry, fn func(c *nsConn, l netlink.Link) error) error {
		c, err := open(e)
		if c == nil {
			return err
		}
		defer c.Close()
		l, err := c.nl.LinkByName(e.Name)
		if err != nil {
			return nil // gone
		}
		return fn(c, l)
	}
	return map[string]ledger.Remover{
		ledger.KindLink: func(e ledger.Entry) error {
			return onLink(e, func(c *nsConn, l netlink.Link) error { return c.nl.LinkDel(l) })
		},
		ledger.KindQdisc: func(e ledger.Entry) error {
			return onLink(e, func(c *nsConn, l netlink.Link) error {
				var q netlink.Qdisc = &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_ROOT}}
				if e.Handle == "ingress" {
					q = &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: hIngress}}
				}
				if err := c.nl.QdiscDel(q); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
					return err
				}
				return nil
			})
		},
		ledger.KindNftable: func(e ledger.Entry) error {
			c, err := open(e)
			if c == nil {
				return err
			}
			defer c.Close()
			fam := nftables.TableFamilyINet
			if e.Family == "netdev" {
				fam = nftables.TableFamilyNetdev
			}
			return deleteTable(c, fam, e.Name)
		},
	}
}

func isGone(ns string) bool {
	if ns == "" {
		return false
	}
	_, err := os.Stat(Link{Netns: ns}.NetnsPath())
	return errors.Is(err, os.ErrNotExist)
}

// RestoreAll clears every link the owner's shaper state lists, restoring
// each as it was (peer up, GSO settings), so a crash never leaves a link
// cut. Links whose namespaces are gone, or are about to go with the
// owner's sweep, are skipped; a link that is gone in a namespace that
// stays (a pod's veth) is forgotten (Forget).
func RestoreAll(ctx context.Context, l *ledger.Ledger, owner string) error {
	dir := filepath.Join(filepath.Dir(l.Dir()), "shape", owner)
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		return nil
	}
	entries, err := l.Entries(owner)
	if err != nil {
		return err
	}
	doomed := map[string]bool{}
	for _, e := range entries {
		if e.Kind == ledger.KindNetns {
			doomed[Link{Netns: e.Name}.NetnsPath()] = true
		}
	}
	s := &Shaper{backend: BackendFallback, ledger: l, owner: owner, stateDir: dir, log: discardLogger()}
	defer s.Close()
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st linkState
		if err := json.Unmarshal(b, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		gone := func(ln *Link) bool {
			return ln != nil && (isGone(ln.Netns) || doomed[ln.NetnsPath()])
		}
		if gone(&st.Target.Link) || gone(st.Target.Peer) {
			// Its namespace goes (or went) with the fleet; only helpers
			// may remain, and the sweep stops those.
			_ = os.Remove(f)
			continue
		}
		if err := s.Forget(ctx, st.Target); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
