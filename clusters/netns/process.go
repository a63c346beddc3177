package netns

import (
	"context"
	"io"
	"path/filepath"

	memberpkg "github.com/edgefault/edgefault/clusters/internal/member"
)

// Process is a process running in a member's namespace.
type Process = memberpkg.Process

// runner starts the fleet's processes, recorded in its ledger, their logs
// in its state directory.
func (f *Fleet) runner() memberpkg.Runner {
	return memberpkg.Runner{Ledger: f.p.ledger, Owner: f.FleetName, LogDir: filepath.Join(f.Dir(), "logs")}
}

// ns is member's namespace.
func (f *Fleet) ns(memberName string) (memberpkg.NS, error) {
	m, err := f.find(memberName)
	if err != nil {
		return memberpkg.NS{}, err
	}
	return memberpkg.NS{Member: m.Name, Path: m.Namespace}, nil
}

// Start runs argv in member's namespace in the background, its output in a
// log file, recorded in the ledger so cleanup stops it even if the caller
// dies. name labels it (and its log file).
func (f *Fleet) Start(ctx context.Context, memberName, name string, argv []string, env ...string) (*Process, error) {
	ns, err := f.ns(memberName)
	if err != nil {
		return nil, err
	}
	return f.runner().Start(ctx, ns, name, argv, env...)
}

// Exec runs argv in member's namespace to completion with the given
// standard streams and returns its error (an *exec.ExitError on a non-zero
// exit).
func (f *Fleet) Exec(ctx context.Context, memberName string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ns, err := f.ns(memberName)
	if err != nil {
		return err
	}
	return f.runner().Exec(ctx, ns, argv, stdin, stdout, stderr)
}

// Dir is the fleet's own state directory (process logs, evidence); it is
// removed when the fleet is taken down.
func (f *Fleet) Dir() string { return filepath.Join(f.p.stateDir, f.FleetName) }
