package scenarios

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/shaper/trace"
)

// Built-in traces, by file name without .csv: `edgefault trace generate`
// made them, and a test keeps them what it makes.
//
//go:embed builtin/traces/*.csv
var traceFS embed.FS

// TraceSource names a trace file of the scenario's own.
type TraceSource struct {
	// File is the trace's CSV, relative to the scenario's file.
	File string `yaml:"file"`
}

// maxTraceFile bounds a trace file (MaxRows rows of ~60 bytes).
const maxTraceFile = 8 << 20

// BuiltinTraces are the traces compiled into the binary, by name.
func BuiltinTraces() []string {
	return embeddedNames(traceFS, "builtin/traces", ".csv")
}

// BuiltinTrace is the CSV of the built-in trace called name.
func BuiltinTrace(name string) ([]byte, error) {
	b, err := traceFS.ReadFile("builtin/traces/" + name + ".csv")
	if err != nil {
		return nil, fmt.Errorf("no built-in trace %q: the built-ins are %s", name, strings.Join(BuiltinTraces(), ", "))
	}
	return b, nil
}

// loadTraces reads the traces the timeline plays: spec.traces' files
// (relative to the scenario's file, source) and the built-ins it names.
func (sp *ScenarioSpec) loadTraces(source string) error {
	sp.traces = map[string]trace.Trace{}
	for name, ts := range sp.Traces {
		p := "spec.traces." + name
		if !nameRE.MatchString(name) {
			return perr(p, "trace name %q: use lowercase letters, digits and '-'", name)
		}
		if ts.File == "" {
			return perr(p+".file", "trace %q needs a file (a CSV: time,down,up,delay,loss; docs/scenarios.md)", name)
		}
		f := ts.File
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(source), f)
		}
		b, err := readBounded(f)
		if err != nil {
			return perr(p+".file", "trace %q: %v", name, err)
		}
		t, err := trace.Parse(ts.File, bytes.NewReader(b))
		if err != nil {
			return perr(p+".file", "%v", err)
		}
		sp.traces[name] = t
	}
	for i, st := range sp.Timeline {
		if st.Trace == "" {
			continue
		}
		if _, ok := sp.traces[st.Trace]; ok {
			continue
		}
		b, err := BuiltinTrace(st.Trace)
		if err != nil {
			return perr(fmt.Sprintf("spec.timeline[%d].trace", i), "%v (or one of spec.traces)", err)
		}
		t, err := trace.Parse("built-in "+st.Trace, bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("built-in trace %s: %w", st.Trace, err) // a test keeps this from happening
		}
		sp.traces[st.Trace] = t
	}
	return nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTraceFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTraceFile {
		return nil, fmt.Errorf("%s is larger than %d MiB: a trace has at most %d rows", path, maxTraceFile>>20, trace.MaxRows)
	}
	return b, nil
}

// Trace is the trace called name that the timeline plays (loaded with
// the scenario).
func (sp *ScenarioSpec) Trace(name string) (trace.Trace, bool) {
	t, ok := sp.traces[name]
	return t, ok
}

// CheckTraceScale says whether the timeline's traces can be played at time
// scale: their rows, scaled, must stay at least trace.PlayResolution
// apart, or the link could not follow them.
func (sp *ScenarioSpec) CheckTraceScale(scale float64) error {
	if scale < 1 {
		scale = 1
	}
	for _, st := range sp.Timeline {
		t, ok := sp.traces[st.Trace]
		if !ok || len(t.Rows) < 2 {
			continue
		}
		gap := time.Duration(1<<63 - 1)
		for i := 1; i < len(t.Rows); i++ {
			gap = min(gap, t.Rows[i].At-t.Rows[i-1].At)
		}
		if scaled := time.Duration(float64(gap) / scale); scaled < trace.PlayResolution {
			return fmt.Errorf("trace %s has rows %v apart: at time scale %g that is %v, closer than the %v a link can follow; play it at time scale %d or lower",
				st.Trace, gap, scale, scaled.Round(time.Millisecond), trace.PlayResolution, max(1, int(gap/trace.PlayResolution)))
		}
	}
	return nil
}
