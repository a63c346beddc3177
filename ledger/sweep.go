package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Remover removes the object an entry describes. It must treat an object
// that is already gone as removed.
type Remover func(Entry) error

// Sweep removes everything owner's ledger lists, newest first (helper
// processes always first, since they hold namespaces open), then drops the
// ledger file. Removers handle kinds the ledger cannot (namespaces, links,
// qdiscs, nft tables); processes and state files it handles itself. It
// goes on past failures and returns them all, keeping the entries that
// could not be removed.
func (l *Ledger) Sweep(owner string, removers map[string]Remover) error {
	entries, err := l.Entries(owner)
	if err != nil {
		return err
	}
	var errs []error
	var done []Entry
	// Objects inside a namespace that is itself being removed go with it.
	doomed := map[string]bool{}
	for _, e := range entries {
		if e.Kind == KindNetns {
			doomed[e.Name] = true
		}
	}
	remove := func(e Entry) {
		var err error
		switch {
		case e.Kind != KindNetns && e.Kind != KindProcess && e.Kind != KindState && doomed[strings.TrimPrefix(e.Netns, "/run/netns/")]:
			done = append(done, e)
			return
		}
		switch e.Kind {
		case KindProcess:
			err = StopProcess(e, 2*time.Second)
		case KindState:
			err = l.removeState(e.Name)
		default:
			r, ok := removers[e.Kind]
			if !ok {
				err = fmt.Errorf("no remover for %s entries", e.Kind)
			} else {
				err = r(e)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", e.Kind, describe(e), err))
			return
		}
		done = append(done, e)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Kind == KindProcess {
			remove(entries[i])
		}
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Kind != KindProcess {
			remove(entries[i])
		}
	}
	if len(errs) == 0 {
		return l.Drop(owner)
	}
	if err := l.Forget(owner, done...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeState removes a state path, but only one inside the directory the
// ledger lives in (symlinks followed): a ledger entry, whoever wrote it,
// never makes the sweep delete anything else.
func (l *Ledger) removeState(path string) error {
	root, err := filepath.EvalSymlinks(filepath.Dir(l.dir))
	if err != nil {
		return err
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(filepath.Clean(path)))
	if errors.Is(err, os.ErrNotExist) {
		return nil // gone with its parent
	}
	if err != nil {
		return err
	}
	real := filepath.Join(parent, filepath.Base(path))
	if rel, err := filepath.Rel(root, real); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsLocal(rel) {
		return fmt.Errorf("refusing to remove %s: it is not inside edgefault's state directory %s", path, root)
	}
	return os.RemoveAll(real)
}

func describe(e Entry) string {
	switch {
	case e.Kind == KindProcess:
		return fmt.Sprintf("%d (%s)", e.PID, e.Name)
	case e.Netns != "":
		return e.Netns + "/" + e.Name
	}
	return e.Name
}
