// Package sandbox confines a user's command before it runs: an
// unprivileged user with no capabilities and no way to regain any (no
// new privileges, an empty bounding set), in a mount namespace of its own
// where the harness's state is hidden under an empty read-only tmpfs but
// for the few paths given to the command to write (its data directory,
// its evidence file), with only the environment it is given.
//
// It is a stage between the ledger's start gate and the command, in the
// same process (same PID, so the ledger and the supervisor still know
// it): the harness's binary starts itself as argv[0] "edgefault-sandbox"
// with the spec in its environment, and RunIfInvoked, called first thing
// in main (shaper.RunHelperIfInvoked calls it), confines the process and
// executes the command.
package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// argv0 marks a process started to become a sandboxed command; specEnv
// carries its Spec.
const (
	argv0   = "edgefault-sandbox"
	specEnv = "EDGEFAULT_SANDBOX"
)

// Spec is what a command is confined to.
type Spec struct {
	// UID and GID it runs as (never 0).
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Hide are directories it must not see (the harness's state: its
	// ledger, fleets, other members' evidence): each is covered by an
	// empty read-only tmpfs. Where a directory's parents are not open to
	// everyone, the topmost such parent is covered instead (the command
	// could not have walked through it anyway).
	Hide []string `json:"hide"`
	// Writable are files and directories (under Hide or not) it may
	// write, owned by UID: they are bound back at the same paths.
	Writable []string `json:"writable"`
	// Dir is its working directory ("" : "/").
	Dir string `json:"dir"`
}

// Check says what is wrong with s, if anything.
func (s Spec) Check() error {
	if s.UID <= 0 || s.GID <= 0 {
		return fmt.Errorf("sandbox: uid %d gid %d: a sandboxed command runs as an unprivileged user, not root", s.UID, s.GID)
	}
	for _, p := range append(append([]string(nil), s.Hide...), s.Writable...) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("sandbox: path %q must be absolute, clean and not /", p)
		}
	}
	return nil
}

// Wrap returns the argv and environment that start argv confined by s:
// helper is the executable that calls RunIfInvoked (the ledger's helper),
// env the command's whole environment (nothing else is passed on).
func Wrap(helper string, s Spec, argv, env []string) (path string, args, wrappedEnv []string, err error) {
	if len(argv) == 0 {
		return "", nil, nil, fmt.Errorf("sandbox: no command")
	}
	if err := s.Check(); err != nil {
		return "", nil, nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", nil, nil, err
	}
	return helper, append([]string{argv0}, argv...), append(append([]string(nil), env...), specEnv+"="+string(b)), nil
}

// fail reports why the command could not be started, on its log, and
// exits with 126 (as a shell does for a command it cannot run).
func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "edgefault-sandbox: "+format+"\n", a...)
	os.Exit(126)
}
