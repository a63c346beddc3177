package member

import (
	"context"
	"sync"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/shaper/impair"
)

// LinkShaper is a clusters.LinkShaper over shapers made on first use:
// those that change links (the first probes the kernel, the others take
// its findings and backend; one per caller changing links at once) and
// one that only reads what is in force (no probe, so reading stays cheap).
type LinkShaper struct {
	// Target is where member is shaped; imp, when not nil, is the
	// impairment about to be applied, which the provider may narrow.
	Target func(member string, imp *impair.Impairment) (shaper.Target, error)
	// New makes a shaper recording into the fleet's ledger.
	New func(opts ...shaper.Option) (*shaper.Shaper, error)

	mu   sync.Mutex
	idle []*shaper.Shaper // shapers for changes, not in use now
	all  []*shaper.Shaper // every one made for changes, to close
	ro   *shaper.Shaper   // reads only: no probe
}

var _ clusters.LinkShaper = (*LinkShaper)(nil)

// writer lends a shaper for changes, made on first need. A Shaper
// serialises its own changes, so callers that change many links at once
// (an outage of sixty routers) each get one of their own; the links' state
// locks keep them apart.
func (l *LinkShaper) writer() (*shaper.Shaper, func(), error) {
	l.mu.Lock()
	if n := len(l.idle); n > 0 {
		sh := l.idle[n-1]
		l.idle = l.idle[:n-1]
		l.mu.Unlock()
		return sh, func() { l.giveBack(sh) }, nil
	}
	var opts []shaper.Option
	if len(l.all) > 0 {
		// The kernel was probed once: the others shape as the first does.
		first := l.all[0]
		opts = []shaper.Option{shaper.WithCapabilities(first.Capabilities()), shaper.WithBackend(first.Backend())}
	}
	l.mu.Unlock()
	sh, err := l.New(opts...)
	if err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	l.all = append(l.all, sh)
	l.mu.Unlock()
	return sh, func() { l.giveBack(sh) }, nil
}

func (l *LinkShaper) giveBack(sh *shaper.Shaper) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.idle = append(l.idle, sh)
}

// reader is a shaper for reads: the writers' if one was made (it probed),
// else one that skips probing.
func (l *LinkShaper) reader() (*shaper.Shaper, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) > 0 {
		return l.all[0], nil
	}
	var err error
	if l.ro == nil {
		l.ro, err = l.New(shaper.WithCapabilities(shaper.Capabilities{Features: allFeatures()}))
	}
	return l.ro, err
}

// allFeatures lets a read-only shaper skip probing.
func allFeatures() map[string]bool {
	m := map[string]bool{}
	for _, f := range []string{shaper.FeatTBF, shaper.FeatHTB, shaper.FeatIngress, shaper.FeatIFB, shaper.FeatMirred, shaper.FeatU32, shaper.FeatNftNetdev, shaper.FeatNftNumgen, shaper.FeatNfqueue} {
		m[f] = true
	}
	return m
}

// Apply replaces what is on member's link with imp.
func (l *LinkShaper) Apply(ctx context.Context, member string, imp impair.Impairment) error {
	t, err := l.Target(member, &imp)
	if err != nil {
		return err
	}
	sh, done, err := l.writer()
	if err != nil {
		return err
	}
	defer done()
	return sh.Apply(ctx, t, imp)
}

// Clear removes every impairment from member's link.
func (l *LinkShaper) Clear(ctx context.Context, member string) error {
	t, err := l.Target(member, nil)
	if err != nil {
		return err
	}
	sh, done, err := l.writer()
	if err != nil {
		return err
	}
	defer done()
	return sh.Clear(ctx, t)
}

// Current is the impairment in force on member's link.
func (l *LinkShaper) Current(member string) (impair.Impairment, bool, error) {
	t, err := l.Target(member, nil)
	if err != nil {
		return impair.Impairment{}, false, err
	}
	sh, err := l.reader()
	if err != nil {
		return impair.Impairment{}, false, err
	}
	return sh.Current(t)
}

// Backend says how impairments are applied (it picks it: a kernel that
// cannot shape as asked is found now).
func (l *LinkShaper) Backend() string {
	sh, done, err := l.writer()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer done()
	return string(sh.Backend())
}

// Close closes the shapers it made.
func (l *LinkShaper) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range append(l.all, l.ro) {
		if s != nil {
			s.Close()
		}
	}
	l.all, l.idle, l.ro = nil, nil, nil
	return nil
}
