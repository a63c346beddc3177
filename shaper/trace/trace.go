// Package trace is a link that changes over time: a CSV of rows (time,
// down, up, delay, loss), each the link's condition from its time until
// the next row's, parsed into impairments and played in place on a link.
// Like package impair it has no kernel dependency; the player is given the
// function that applies an impairment (the shaper's Apply, whose
// transitions never leave the link unshaped).
//
// The format (docs/scenarios.md):
//
//	time,down,up,delay,loss
//	0s,16mbit,9mbit,30ms,0%
//	1.5s,1600kbit,750kbit,75ms,0.5%
//	3s,cut,cut,,
//
// A header names the columns, in any order; time is required, the others
// may be left out or left empty (not impaired). A rate of "cut" on either
// direction cuts the link for that row. Rows are at least Resolution
// apart, the first at 0, at most MaxRows of them.
package trace

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/units"
)

// Resolution is the shortest time between two rows, in the trace's own
// time (before a scenario's time scale): what one Apply costs on a loaded
// machine (docs/shaping.md has the measured lag) is a few tens of
// milliseconds, so rows closer than this would blur into each other.
const Resolution = 100 * time.Millisecond

// PlayResolution is the shortest time between two rows in real time, at
// the time scale a trace is played at: a row that changes the delay
// restarts the link's delay helper (fallback backend), which took
// 20-48 ms on an idle machine but 180 ms (median) beside a running fleet,
// so rows 100 ms apart fell behind and a quarter of them were skipped.
const PlayResolution = 250 * time.Millisecond

// MaxRows bounds a trace (a day at one row a second is 86 400).
const MaxRows = 100_000

// Row is the link's condition from At until the next row.
type Row struct {
	At         time.Duration
	Impairment impair.Impairment
}

// Trace is a parsed trace: rows in time order, the first at 0.
type Trace struct {
	Rows []Row
}

// Duration is the time of the last row: the trace's length as played once
// (its last row then holds).
func (t Trace) Duration() time.Duration {
	if len(t.Rows) == 0 {
		return 0
	}
	return t.Rows[len(t.Rows)-1].At
}

var columns = []string{"time", "down", "up", "delay", "loss"}

// Parse reads a trace; name (a file name) prefixes errors, each with its
// line.
func Parse(name string, r io.Reader) (Trace, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return Trace{}, fmt.Errorf("%s: empty trace: the first line names the columns (%s)", name, strings.Join(columns, ","))
	}
	if err != nil {
		return Trace{}, fmt.Errorf("%s: %w", name, err)
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(columns, h) {
			return Trace{}, fmt.Errorf("%s:1: column %q: a trace has the columns %s", name, h, strings.Join(columns, ", "))
		}
		if _, dup := col[h]; dup {
			return Trace{}, fmt.Errorf("%s:1: column %q appears twice", name, h)
		}
		col[h] = i
	}
	if _, ok := col["time"]; !ok {
		return Trace{}, fmt.Errorf("%s:1: no time column: the first line names the columns (%s)", name, strings.Join(columns, ","))
	}
	var t Trace
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Trace{}, fmt.Errorf("%s:%d: %v", name, pe.Line, pe.Err)
			}
			return Trace{}, fmt.Errorf("%s: %w", name, err)
		}
		// Positions exist only for a record read without error.
		line, _ := cr.FieldPos(0)
		if len(t.Rows) == MaxRows {
			return Trace{}, fmt.Errorf("%s:%d: more than %d rows: split the trace or lower its resolution", name, line, MaxRows)
		}
		row, err := parseRow(rec, col)
		if err != nil {
			return Trace{}, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		switch n := len(t.Rows); {
		case n == 0 && row.At != 0:
			return Trace{}, fmt.Errorf("%s:%d: the first row is at %v: a trace starts at 0s", name, line, row.At)
		case n > 0 && row.At-t.Rows[n-1].At < Resolution:
			return Trace{}, fmt.Errorf("%s:%d: row at %v is %v after the one before: rows are at least %v apart (the resolution a link can be changed at)", name, line, row.At, row.At-t.Rows[n-1].At, Resolution)
		}
		t.Rows = append(t.Rows, row)
	}
	if len(t.Rows) == 0 {
		return Trace{}, fmt.Errorf("%s: no rows after the header", name)
	}
	return t, nil
}

func parseRow(rec []string, col map[string]int) (Row, error) {
	get := func(c string) string {
		if i, ok := col[c]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var row Row
	ts := get("time")
	if ts == "" {
		return row, errors.New("time is empty")
	}
	at, err := parseTime(ts)
	if err != nil {
		return row, err
	}
	row.At = at
	imp := &row.Impairment
	for _, d := range []struct {
		c  string
		to *units.Rate
	}{{"down", &imp.DownRate}, {"up", &imp.UpRate}} {
		switch v := get(d.c); strings.ToLower(v) {
		case "":
		case "cut":
			imp.Outage = true
		default:
			if *d.to, err = units.ParseRate(v); err != nil {
				return row, fmt.Errorf("%s: %w (or cut)", d.c, err)
			}
		}
	}
	if v := get("delay"); v != "" {
		if imp.Delay, err = units.ParseDuration("delay", v); err != nil {
			return row, err
		}
	}
	if v := get("loss"); v != "" {
		if imp.Loss, err = units.ParsePercent(v); err != nil {
			return row, err
		}
	}
	if imp.Outage {
		// A cut row is only a cut: what else it said does not pass.
		*imp = impair.Impairment{Outage: true}
	}
	if err := imp.Validate(); err != nil {
		return row, err
	}
	return row, nil
}

// parseTime reads "90s", "1m30s", "1.5s" or plain seconds ("90", "1.5").
func parseTime(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e7 {
			return 0, fmt.Errorf("time %q is out of range: 0 to 10000000 seconds", s)
		}
		return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("time %q: use a duration like 1.5s or 2m, or seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("time %q is negative", s)
	}
	return d, nil
}

// Play applies the trace's rows in time order, each at start + its time ÷
// scale (scale >= 1 plays faster), looping while the trace is shorter than
// length (0: once, its last row then holds). apply is told each row's
// index and how late it came; a row whose successor is already due when
// its turn comes is skipped (a loaded machine falls behind; the link
// catches up with the trace rather than replaying it late). It returns how
// many rows it skipped when the trace is done or ctx ends, or apply's
// error.
func (t Trace) Play(ctx context.Context, start time.Time, scale float64, length time.Duration, apply func(ctx context.Context, i int, imp impair.Impairment, late time.Duration) error) (skipped int, err error) {
	if scale < 1 {
		scale = 1
	}
	// A loop's length is the last row's time plus the spacing before it,
	// so its first row does not come at once after its last.
	loop := t.Duration()
	if n := len(t.Rows); n > 1 {
		loop += t.Rows[n-1].At - t.Rows[n-2].At
	} else {
		loop += time.Second
	}
	due := func(k int) (time.Time, bool) { // the k-th row played, counting loops
		at := time.Duration(k/len(t.Rows))*loop + t.Rows[k%len(t.Rows)].At
		if length > 0 && at >= length || length == 0 && k >= len(t.Rows) {
			return time.Time{}, false
		}
		return start.Add(time.Duration(float64(at) / scale)), true
	}
	for k := 0; ; k++ {
		at, ok := due(k)
		if !ok {
			return skipped, nil
		}
		if d := time.Until(at); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-ctx.Done():
				tm.Stop()
				return skipped, nil
			case <-tm.C:
			}
		}
		if ctx.Err() != nil {
			return skipped, nil
		}
		if next, ok := due(k + 1); ok && !time.Now().Before(next) {
			skipped++
			continue
		}
		if err := apply(ctx, k%len(t.Rows), t.Rows[k%len(t.Rows)].Impairment, time.Since(at)); err != nil {
			return skipped, err
		}
	}
}
