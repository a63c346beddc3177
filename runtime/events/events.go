// Package events appends and reads event logs: JSON lines of wire.Event,
// one file per component, written with O_APPEND so a crash loses at most the
// line being written and readers tolerate a torn last line.
package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
)

// Log appends events for one component on one node. A nil *Log discards.
// Writes happen on a goroutine of their own, so a slow disk or a blocked
// stdout pipe never stalls the component that emits (a full queue drops
// and counts instead).
type Log struct {
	w         io.Writer
	c         io.Closer
	node      string
	component string
	logger    *slog.Logger
	queue     chan []byte
	done      chan struct{}
	closeOnce sync.Once
	dropped   atomic.Int64
	// path, size and max rotate a file log: past max bytes it becomes
	// the previous log (rotated) and a new one starts.
	path      string
	size, max int64
}

// DefaultMaxBytes bounds one event log file of a server that logs every
// request (OpenMax): past it the file becomes <name>.1.jsonl (replacing
// an older one) and a new file starts, so it cannot fill the disk; at
// most twice this is kept.
const DefaultMaxBytes = 64 << 20

// Rotated is the name a log file at path is rotated to.
func Rotated(path string) string {
	if base, ok := strings.CutSuffix(path, ".jsonl"); ok {
		return base + ".1.jsonl"
	}
	return path + ".1"
}

// Open appends to path (created with its directory), or to stdout when path
// is "-", or discards when path is "". It never rotates: evidence is
// judged whole. Servers that log every request use OpenMax.
func Open(path, node, component string, logger *slog.Logger) (*Log, error) {
	return OpenMax(path, node, component, logger, 0)
}

// OpenMax is Open rotating a file past max bytes (0: never).
func OpenMax(path, node, component string, logger *slog.Logger, max int64) (*Log, error) {
	l := &Log{node: node, component: component, logger: logger, path: path, max: max}
	switch path {
	case "":
		l.w = io.Discard
	case "-":
		l.w = os.Stdout
	default:
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("event log %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("event log %s: %w (give a writable --events path)", path, err)
		}
		l.w, l.c = f, f
		if st, err := f.Stat(); err == nil {
			l.size = st.Size()
		}
	}
	l.queue, l.done = make(chan []byte, 4096), make(chan struct{})
	go l.write()
	return l, nil
}

func (l *Log) write() {
	defer close(l.done)
	for b := range l.queue {
		if l.c != nil && l.max > 0 && l.size > 0 && l.size+int64(len(b)) > l.max {
			l.rotate()
		}
		n, err := l.w.Write(b)
		l.size += int64(n)
		if err != nil && l.logger != nil {
			l.logger.Warn("event log write failed", "err", err)
		}
	}
}

// rotate moves the full file aside and starts a new one; on failure it
// keeps writing where it was (evidence is best effort).
func (l *Log) rotate() {
	if err := os.Rename(l.path, Rotated(l.path)); err != nil {
		if l.logger != nil {
			l.logger.Warn("event log rotation failed", "path", l.path, "err", err)
		}
		l.size = 0 // do not retry on every line
		return
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		if l.logger != nil {
			l.logger.Warn("event log rotation failed", "path", l.path, "err", err)
		}
		l.size = 0
		return
	}
	l.c.Close()
	l.w, l.c, l.size = f, f, 0
}

// Dropped is how many events were dropped because the writer fell behind.
func (l *Log) Dropped() int64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Emit queues one event stamped now; kv are alternating keys and values.
// A write error is logged, not returned: evidence is best effort and must
// never stop the component it describes.
func (l *Log) Emit(event string, kv ...any) wire.Event {
	e := wire.Event{Time: time.Now().UTC(), Event: event}
	if len(kv) > 0 {
		e.Fields = make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			e.Fields[fmt.Sprint(kv[i])] = kv[i+1]
		}
	}
	if l == nil {
		return e
	}
	e.Node, e.Component = l.node, l.component
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(wire.Event{Time: e.Time, Node: l.node, Component: l.component, Event: event, Fields: map[string]any{"marshalError": err.Error()}})
	}
	b = append(b, '\n')
	select {
	case l.queue <- b:
	default:
		if l.dropped.Add(1) == 1 && l.logger != nil {
			l.logger.Warn("event log writer behind: dropping events", "event", event)
		}
	}
	return e
}

// Close writes what is queued and closes the file, if any. Emit must not
// be called after Close.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() { close(l.queue) })
	<-l.done
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}

// Read returns every event in path, skipping lines that do not parse (a
// torn last line after a crash).
func Read(path string) ([]wire.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f)
}

// Decode reads JSON-lines events from r, skipping lines that do not parse.
func Decode(r io.Reader) ([]wire.Event, error) {
	var out []wire.Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e wire.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && !e.Time.IsZero() {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// Wait polls path until an event satisfies match, returning it, or until ctx
// ends. Tests and the harness use it to wait for evidence.
func Wait(ctx context.Context, path string, match func(wire.Event) bool) (wire.Event, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		evs, _ := Read(path)
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return wire.Event{}, fmt.Errorf("no matching event in %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}
