// Package ledger records everything edgefault creates on a machine —
// network namespaces, links, qdiscs, nft tables, helper processes — so that
// it can all be removed again, even after the process that created it was
// killed with SIGKILL.
//
// A ledger is a directory. Each owner (a fleet, or a one-off shaping session)
// has one append-only JSON-lines file in it. An entry is written before the
// thing it describes is created, so a crash can leave an entry whose object
// never existed (removal tolerates that) but never an object without an
// entry.
//
// Entries are not fsynced: a completed write(2) survives the writer being
// killed, which is the crash the ledger is for, and what it records
// (namespaces, qdiscs, processes) does not survive a machine crash anyway.
package ledger

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Kinds of entries.
const (
	KindNetns   = "netns"   // a named network namespace (Name)
	KindLink    = "link"    // a link (Name) in namespace Netns
	KindQdisc   = "qdisc"   // a qdisc on link Name in Netns; Handle is "root" or "ingress"
	KindNftable = "nftable" // an nft table Name of Family in Netns
	KindProcess = "process" // a helper process PID started at StartTime (clock ticks since boot)
	KindState   = "state"   // a file under the ledger directory (Name) holding state for an object
	KindMount   = "mount"   // a filesystem mounted at Name (a fleet member's own disk)
)

// Entry describes one thing that was created.
type Entry struct {
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
	Netns  string `json:"netns,omitempty"`
	Family string `json:"family,omitempty"`
	Handle string `json:"handle,omitempty"`
	// NetnsID is the namespace's device:inode when the entry was made: a
	// remover leaves alone a namespace path that now names another one.
	NetnsID   string `json:"netnsID,omitempty"`
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	// Group: the process leads a process group (its own session); stop
	// the whole group.
	Group bool `json:"group,omitempty"`
	// Mark is in the environment of every process Start started for the
	// entry (and of their children): once a group's leader is gone, only
	// processes carrying it are the group's.
	Mark string    `json:"mark,omitempty"`
	Time time.Time `json:"time"`
	// Removed marks a tombstone: the object was removed on purpose.
	Removed bool `json:"removed,omitempty"`
}

// Key identifies the object an entry is about, so that a tombstone matches
// the entry it removes.
func (e Entry) Key() string {
	return strings.Join([]string{e.Kind, e.Netns, e.Family, e.Name, e.Handle, fmt.Sprint(e.PID), fmt.Sprint(e.StartTime)}, "|")
}

// Ledger is a directory of per-owner entry files.
type Ledger struct {
	dir string
	// helper is the executable a process started by Start begins as (the
	// start gate); see WithHelper.
	helper string
}

// DefaultHelper is the start gate's executable unless WithHelper says
// otherwise: the running binary itself, which must then call
// RunGateIfInvoked first thing in main (and in TestMain).
const DefaultHelper = "/proc/self/exe"

// Option configures a Ledger opened by Open.
type Option func(*options)

type options struct {
	helper string
}

// WithHelper makes path the executable that processes started by Start
// begin as (the start gate; default DefaultHelper, the running binary).
// The binary at path must call RunGateIfInvoked (or
// shaper.RunHelperIfInvoked, which calls it) first thing in main; the
// edgeguard binary does. Use it when the running binary does not, such as
// a user's own test binary that imports the harness. A relative path is
// made absolute; "" means the default.
func WithHelper(path string) Option { return func(o *options) { o.helper = path } }

// DefaultDir is where the ledger lives unless EDGEFAULT_STATE_DIR says
// otherwise. /run is right: what it records (namespaces, qdiscs, processes)
// does not survive a reboot either.
func DefaultDir() string {
	if d := os.Getenv("EDGEFAULT_STATE_DIR"); d != "" {
		return filepath.Join(d, "ledger")
	}
	return "/run/edgefault/ledger"
}

// Open returns the ledger in dir, creating the directory if needed. Two
// Ledgers opened on the same directory (with different helpers, say) share
// its entries.
func Open(dir string, opts ...Option) (*Ledger, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	helper, err := checkHelper(o.helper)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create ledger directory %s: %w (is it writable? edgefault needs root)", dir, err)
	}
	return &Ledger{dir: dir, helper: helper}, nil
}

// checkHelper resolves a start-gate executable: the default, or an
// absolute path to an executable regular file.
func checkHelper(path string) (string, error) {
	if path == "" || path == DefaultHelper {
		return DefaultHelper, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("helper %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("helper: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("helper %s is not an executable file", abs)
	}
	return abs, nil
}

// Dir is the ledger's directory.
func (l *Ledger) Dir() string { return l.dir }

// Helper is the executable processes started by Start begin as (see
// WithHelper): DefaultHelper or an absolute path.
func (l *Ledger) Helper() string {
	if l.helper == "" { // a zero Ledger
		return DefaultHelper
	}
	return l.helper
}

var ownerRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ValidOwner reports whether name can own ledger entries.
func ValidOwner(name string) error {
	if !ownerRE.MatchString(name) {
		return fmt.Errorf("invalid name %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

func (l *Ledger) path(owner string) string { return filepath.Join(l.dir, owner+".jsonl") }

// Record appends entries for owner; they are in the file when it returns.
func (l *Ledger) Record(owner string, entries ...Entry) error {
	if err := ValidOwner(owner); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path(owner), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open ledger for %s: %w", owner, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock ledger for %s: %w", owner, err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		j, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	// A writer killed mid-write leaves a torn line without its newline:
	// start on a fresh line so the torn one stays alone.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			b2 := "\n" + b.String()
			b.Reset()
			b.WriteString(b2)
		}
	}
	// One write(2) under the lock: entries from concurrent writers never
	// interleave.
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("write ledger for %s: %w", owner, err)
	}
	return nil
}

// Forget records that the objects behind entries were removed on purpose.
func (l *Ledger) Forget(owner string, entries ...Entry) error {
	for i := range entries {
		entries[i].Removed = true
		entries[i].Time = time.Time{}
	}
	return l.Record(owner, entries...)
}

// Entries returns owner's live entries (recorded and not forgotten) in the
// order they were recorded.
func (l *Ledger) Entries(owner string) ([]Entry, error) {
	f, err := os.Open(l.path(owner))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ledger for %s: %w", owner, err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A writer killed mid-write tears its line (Record starts the
			// next entry on a fresh line). It died before creating what
			// the entry describes, so the line is skipped.
			continue
		}
		if e.Removed {
			// A tombstone removes every live entry for the object: the
			// same object may have been recorded more than once.
			k := e.Key()
			kept := out[:0]
			for _, o := range out {
				if o.Key() != k {
					kept = append(kept, o)
				}
			}
			out = kept
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Owners lists the owners that have a ledger file.
func (l *Ledger) Owners() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(l.dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(p), ".jsonl"))
	}
	sort.Strings(out)
	return out, nil
}

// Drop deletes owner's ledger file; call it once everything in it is gone.
func (l *Ledger) Drop(owner string) error {
	err := os.Remove(l.path(owner))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
