package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	memberpkg "github.com/edgefault/edgefault/clusters/internal/member"
	"github.com/edgefault/edgefault/ledger"
	"github.com/edgefault/edgefault/shaper"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Down removes the fleet: its helper processes, namespaces and state.
func (p *Provider) Down(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	// Waits for an Up or Down of the name in progress, as long as ctx
	// lets it.
	unlock, err := memberpkg.WaitLockFleet(ctx, p.ledger, name)
	if err != nil {
		return err
	}
	defer unlock()
	return p.down(name)
}

// down is Down under the fleet's lock.
func (p *Provider) down(name string) error {
	entries, err := p.ledger.Entries(name)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		if _, err := os.Stat(p.statePath(name)); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fleet %q is not up (nothing recorded for it)", name)
		}
	}
	// Another provider's fleet (containers, clusters) is not half taken
	// down by this one.
	rm := p.removerKinds()
	for _, e := range entries {
		if !rm[e.Kind] {
			return fmt.Errorf("fleet %q holds %s entries, which the embedded fleet does not make: take it down with the provider that made it (--provider kind) or 'edgefault cleanup --fleet %s'", name, e.Kind, name)
		}
	}
	return p.sweep(name)
}

// Sweep removes everything the ledger holds for owner (edgefault
// cleanup), unless an Up or Down of it is in progress: that one finishes
// or removes its own.
func (p *Provider) Sweep(owner string) error {
	if err := ledger.ValidOwner(owner); err != nil {
		return err
	}
	unlock, err := p.lock(owner)
	if err != nil {
		return err
	}
	defer unlock()
	return p.sweep(owner)
}

// removerKinds are the entry kinds a sweep can remove.
func (p *Provider) removerKinds() map[string]bool {
	kinds := map[string]bool{ledger.KindProcess: true, ledger.KindState: true}
	for k := range p.removers() {
		kinds[k] = true
	}
	return kinds
}

// sweep is Sweep under the owner's lock.
func (p *Provider) sweep(owner string) error {
	if err := p.ledger.Sweep(owner, p.removers()); err != nil {
		return err
	}
	// The state directory of the shaper for this owner, if any.
	_ = os.RemoveAll(filepath.Join(filepath.Dir(p.ledger.Dir()), "shape", owner))
	_ = os.RemoveAll(filepath.Join(p.stateDir, owner))
	return nil
}

// removers remove what the embedded fleet records, and what the removers
// it was given do (other providers', for cleanup).
func (p *Provider) removers() map[string]ledger.Remover {
	rm := shaper.Removers()
	for k, v := range p.extra {
		rm[k] = v
	}
	rm[ledger.KindMount] = p.unmountDisk
	rm[ledger.KindNetns] = func(e ledger.Entry) error {
		err := netns.DeleteNamed(e.Name)
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
			return nil
		case errors.Is(err, unix.EINVAL):
			// Not a mount point: killed between creating the file and
			// bind-mounting the namespace on it. Only the file is left.
			if rerr := os.Remove(filepath.Join("/run/netns", e.Name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return rerr
			}
			return nil
		}
		return err
	}
	return rm
}
