package member

import (
	"context"
	"sync"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/shaper/impair"
)

// LinkShaper is a clusters.LinkShaper over shapers made on first use: one
// that changes links (it probes the kernel once) and one that only reads
// what is in force (no probe, so reading stays cheap).
type LinkShaper struct {
	// Target is where member is shaped; imp, when not nil, is the
	// impairment about to be applied, which the provider may narrow.
	Target func(member string, imp *impair.Impairment) (shaper.Target, error)
	// New makes a shaper recording into the fleet's ledger.
	New func(opts ...shaper.Option) (*shaper.Shaper, error)

	mu sync.Mutex
	sh *shaper.Shaper // made on the first change
	ro *shaper.Shaper // reads only: no probe
}

var _ clusters.LinkShaper = (*LinkShaper)(nil)

func (l *LinkShaper) shaper(write bool) (*shaper.Shaper, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	switch {
	case write && l.sh == nil:
		l.sh, err = l.New()
		return l.sh, err
	case write || l.sh != nil:
		return l.sh, nil
	case l.ro == nil:
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
	sh, err := l.shaper(true)
	if err != nil {
		return err
	}
	return sh.Apply(ctx, t, imp)
}

// Clear removes every impairment from member's link.
func (l *LinkShaper) Clear(ctx context.Context, member string) error {
	t, err := l.Target(member, nil)
	if err != nil {
		return err
	}
	sh, err := l.shaper(true)
	if err != nil {
		return err
	}
	return sh.Clear(ctx, t)
}

// Current is the impairment in force on member's link.
func (l *LinkShaper) Current(member string) (impair.Impairment, bool, error) {
	t, err := l.Target(member, nil)
	if err != nil {
		return impair.Impairment{}, false, err
	}
	sh, err := l.shaper(false)
	if err != nil {
		return impair.Impairment{}, false, err
	}
	return sh.Current(t)
}

// Backend says how impairments are applied (it picks it: a kernel that
// cannot shape as asked is found now).
func (l *LinkShaper) Backend() string {
	sh, err := l.shaper(true)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return string(sh.Backend())
}

// Close closes the shapers it made.
func (l *LinkShaper) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range []*shaper.Shaper{l.sh, l.ro} {
		if s != nil {
			s.Close()
		}
	}
	l.sh, l.ro = nil, nil
	return nil
}
