package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/validators"
)

// evidenceLogs hands out event logs for the harness's own evidence, one
// file per node and component under the run's evidence directory.
type evidenceLogs struct {
	dir  string
	log  *slog.Logger
	mu   sync.Mutex
	open map[string]*events.Log
	// tap, if set, sees every event as it is recorded (a live session's
	// dashboard); it must not block.
	tap func(wire.Event)
}

func newEvidenceLogs(dir string, log *slog.Logger) *evidenceLogs {
	return &evidenceLogs{dir: dir, log: log, open: map[string]*events.Log{}}
}

// emit records an event of the harness about node.
func (e *evidenceLogs) emit(node, component, event string, kv ...any) {
	e.mu.Lock()
	l, ok := e.open[node+"/"+component]
	if !ok {
		var err error
		l, err = events.Open(filepath.Join(e.dir, node+"-"+component+".jsonl"), node, component, e.log)
		if err != nil {
			e.log.Error("evidence will be incomplete", "err", err)
			l, _ = events.Open("", node, component, e.log)
		}
		e.open[node+"/"+component] = l
	}
	e.mu.Unlock()
	l.Emit(event, kv...)
	if e.tap != nil {
		f := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				f[k] = kv[i+1]
			}
		}
		e.tap(wire.Event{Time: time.Now().UTC(), Node: node, Component: component, Event: event, Fields: f})
	}
}

// emitTyped records typed evidence (wire.Sample, wire.NodeMark).
func (e *evidenceLogs) emitTyped(node, component, event string, v any) {
	fields := wire.Fields(v)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]any, 0, 2*len(fields))
	for _, k := range keys {
		kv = append(kv, k, fields[k])
	}
	e.emit(node, component, event, kv...)
}

func (e *evidenceLogs) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, l := range e.open {
		_ = l.Close()
		delete(e.open, k)
	}
}

// appSuffix ends the evidence files apps write about themselves.
const appSuffix = ".app.jsonl"

// mergeEvidence reads every event log of the run, and the evidence the
// apps wrote about themselves (the files apps names, labelled by who was
// given each, with the lines that break the contract), and orders the
// events by time.
func mergeEvidence(dir string, apps []appFile) (all []wire.Event, problems []string, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		if strings.HasSuffix(f, appSuffix) {
			continue // an app's own: read below, labelled as such
		}
		evs, err := events.Read(f)
		if err != nil {
			return nil, nil, fmt.Errorf("evidence %s: %w", f, err)
		}
		for _, e := range evs {
			// Only the files below are an app's: a line in any other
			// that claims to be one is a forgery.
			if !strings.HasPrefix(e.Component, validators.AppComponent) {
				all = append(all, e)
			}
		}
	}
	for _, a := range apps {
		evs, p, err := validators.ReadAppEvents(filepath.Join(dir, a.base), a.member, a.workload)
		if errors.Is(err, fs.ErrNotExist) {
			continue // it wrote nothing about itself
		}
		if err != nil {
			return nil, nil, fmt.Errorf("app evidence: %w", err)
		}
		all = append(all, evs...)
		problems = append(problems, p...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	return all, problems, nil
}

// freshEvidence empties dir/evidence and dir/logs, which an earlier run
// of the scenario may have left, and returns dir/evidence.
func freshEvidence(dir string) (string, error) {
	for _, sub := range []string{"evidence", "logs"} {
		to := filepath.Join(dir, sub)
		if err := os.RemoveAll(to); err != nil {
			return "", fmt.Errorf("evidence directory: %w", err)
		}
		if err := os.MkdirAll(to, 0o755); err != nil {
			return "", fmt.Errorf("evidence directory: %w", err)
		}
	}
	return filepath.Join(dir, "evidence"), nil
}
