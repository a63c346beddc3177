package report

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/validators"
)

// Write writes the report into dir (created if need be) as report.json,
// junit.xml and report.html, and returns their paths. Each file is replaced
// atomically: a reader, or a crash, sees the old file or the new one, never
// half of one.
func (r *Report) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report directory %s: %w", dir, err)
	}
	// Render everything before writing anything, so a rendering error
	// leaves the directory as it was.
	js, err := reportJSON(r)
	if err != nil {
		return nil, err
	}
	jx, err := reportJUnit(r)
	if err != nil {
		return nil, err
	}
	h, err := reportHTML(r)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		name string
		b    []byte
	}{{"report.json", js}, {"junit.xml", jx}, {"report.html", h}} {
		p := filepath.Join(dir, f.name)
		if err := reportWriteFile(p, f.b); err != nil {
			return paths, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// reportWriteFile writes b to a temporary file next to path and renames it
// over path.
func reportWriteFile(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	// Without the sync a crash after the rename can leave an empty file
	// under the final name.
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// reportJSON is r as indented JSON.
func reportJSON(r *Report) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		// JSON has no NaN or Inf: one glitched reading must not cost the
		// whole report, so retry with those values dropped.
		b, err = json.MarshalIndent(reportFinite(r), "", "  ")
	}
	if err != nil {
		return nil, fmt.Errorf("report.json: %w", err)
	}
	return append(b, '\n'), nil
}

// reportFinite copies r with its non-finite numbers removed: samples read
// 0, Numbers lose the entry, event fields say "NaN" or "+Inf" in words.
func reportFinite(r *Report) *Report {
	c := *r
	c.Scenarios = slices.Clone(r.Scenarios)
	for i := range c.Scenarios {
		s := &c.Scenarios[i]
		s.TimeScale = reportFiniteOr0(s.TimeScale)
		s.Verdicts = slices.Clone(s.Verdicts)
		for j := range s.Verdicts {
			v := &s.Verdicts[j]
			if v.Numbers != nil {
				nums := make(map[string]float64, len(v.Numbers))
				for k, x := range v.Numbers {
					if reportIsFinite(x) {
						nums[k] = x
					}
				}
				v.Numbers = nums
			}
			v.Evidence = slices.Clone(v.Evidence)
			for k := range v.Evidence {
				e := &v.Evidence[k]
				if e.Fields == nil {
					continue
				}
				fs := make(map[string]any, len(e.Fields))
				for name, x := range e.Fields {
					switch f := x.(type) {
					case float64:
						if !reportIsFinite(f) {
							x = strconv.FormatFloat(f, 'g', -1, 64)
						}
					case float32:
						if !reportIsFinite(float64(f)) {
							x = strconv.FormatFloat(float64(f), 'g', -1, 32)
						}
					}
					fs[name] = x
				}
				e.Fields = fs
			}
		}
		s.Nodes = slices.Clone(s.Nodes)
		for j := range s.Nodes {
			n := &s.Nodes[j]
			n.Samples = slices.Clone(n.Samples)
			for k := range n.Samples {
				n.Samples[k].RxBps = reportFiniteOr0(n.Samples[k].RxBps)
				n.Samples[k].TxBps = reportFiniteOr0(n.Samples[k].TxBps)
			}
		}
	}
	return &c
}

func reportIsFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func reportFiniteOr0(x float64) float64 {
	if reportIsFinite(x) {
		return x
	}
	return 0
}

// JUnit XML, in the dialect Jenkins, GitLab and GitHub actions read.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// reportJUnit renders r as JUnit XML: a suite per scenario, a test case per
// verdict.
func reportJUnit(r *Report) ([]byte, error) {
	all := junitSuites{Name: "edgefault", Time: reportSeconds(r.Duration)}
	for _, s := range r.Scenarios {
		su := junitSuite{
			Name: s.Name,
			Time: reportSeconds(s.Duration),
			Properties: []junitProperty{
				{"timeScale", reportNumber(s.TimeScale)},
				{"seed", strconv.FormatUint(s.Seed, 10)},
				{"runtime", s.Runtime},
				{"sites", s.SitesSummary()},
				{"fleet", s.Resources()},
				{"source", s.Source},
				{"provider", cmp.Or(s.Provider, r.Provider)},
				{"backend", s.Backend},
			},
		}
		if s.Cluster != "" {
			su.Properties = append(su.Properties, junitProperty{"cluster", s.Cluster}, junitProperty{"placement", s.Placement})
		}
		if !s.Started.IsZero() {
			// The JUnit schema's timestamp has no zone, so give it in UTC.
			su.Timestamp = s.Started.UTC().Format("2006-01-02T15:04:05")
		}
		class := "edgefault." + s.Name
		if s.Error != "" {
			su.Errors++
			su.Cases = append(su.Cases, junitCase{
				Classname: class, Name: "run", Time: "0",
				Error: &junitProblem{Message: s.Error, Type: "run", Text: s.Error},
			})
		}
		for _, v := range s.Verdicts {
			c := junitCase{Classname: class, Name: strings.TrimSpace(v.Validator + " " + v.Group), Time: "0"}
			if v.Pass {
				c.SystemOut = v.Summary
			} else {
				su.Failures++
				msg := v.Summary
				if msg == "" {
					msg = "failed"
				}
				c.Failure = &junitProblem{Message: msg, Type: "verdict", Text: reportVerdictText(v, s.Started)}
			}
			su.Cases = append(su.Cases, c)
		}
		if !s.Pass && su.Failures == 0 && su.Errors == 0 {
			// CI must not show green for a scenario the report calls failed.
			su.Failures++
			su.Cases = append(su.Cases, junitCase{
				Classname: class, Name: "verdicts", Time: "0",
				Failure: &junitProblem{Message: "scenario failed without a failing verdict", Type: "verdict"},
			})
		}
		su.Tests = len(su.Cases)
		all.Tests += su.Tests
		all.Failures += su.Failures
		all.Errors += su.Errors
		all.Suites = append(all.Suites, su)
	}
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("junit.xml: %w", err)
	}
	return append(append([]byte(xml.Header), b...), '\n'), nil
}

// reportVerdictText is a failed verdict's numbers and evidence, a line each.
func reportVerdictText(v validators.Verdict, start time.Time) string {
	var b strings.Builder
	if len(v.Lines) > 1 {
		b.WriteString(strings.Join(v.Lines, "\n"))
	} else {
		b.WriteString(v.Summary)
	}
	if nums := reportNumbers(v.Numbers); len(nums) > 0 {
		b.WriteString("\nnumbers: ")
		b.WriteString(strings.Join(nums, " "))
	}
	if len(v.Evidence) > 0 {
		b.WriteString("\nevidence:")
		for _, e := range v.Evidence {
			b.WriteString("\n  ")
			b.WriteString(reportEvent(e, start))
		}
	}
	return b.String()
}

func reportSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// reportNumber formats a measured figure for people: no exponent for
// ordinary sizes, no float noise, and words for what is not a number.
func reportNumber(x float64) string {
	switch a := math.Abs(x); {
	case math.IsNaN(x):
		return "n/a"
	case math.IsInf(x, 0):
		return "n/a (infinite)"
	case x == math.Trunc(x) && a < 1e15:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case a >= 1e15 || a < 0.001:
		return strconv.FormatFloat(x, 'g', 3, 64)
	default:
		s := strconv.FormatFloat(x, 'f', 3, 64)
		return strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
}

// reportNumbers is "name=value" for each of nums, by name.
func reportNumbers(nums map[string]float64) []string {
	keys := make([]string, 0, len(nums))
	for k := range nums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + reportNumber(nums[k])
	}
	return out
}

// reportEvent is one event on a line: "t+12.3s node component event k=v".
func reportEvent(e wire.Event, start time.Time) string {
	var b strings.Builder
	b.WriteString(reportAt(e.Time, start))
	for _, s := range []string{e.Node, e.Component, e.Event} {
		if s != "" {
			b.WriteByte(' ')
			b.WriteString(s)
		}
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(" " + k + "=" + reportValue(e.Fields[k]))
	}
	return b.String()
}

// reportAt is t relative to start ("t+12.3s"), or the clock time when
// there is no start to count from.
func reportAt(t, start time.Time) string {
	switch {
	case t.IsZero():
		return "t?"
	case start.IsZero():
		return t.UTC().Format("15:04:05.000")
	}
	return fmt.Sprintf("t%+.1fs", t.Sub(start).Seconds())
}

func reportValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if x == "" || strings.ContainsAny(x, " \t\r\n\"=") {
			return strconv.Quote(x)
		}
		return x
	case float64:
		return reportNumber(x)
	case float32:
		return reportNumber(float64(x))
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// reportDuration rounds d to what a reader cares about.
func reportDuration(d time.Duration) string {
	if d >= time.Second || d <= -time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// seedWords says how to replay a run's drops ("" without a seed).
func seedWords(seed uint64) string {
	if seed == 0 {
		return ""
	}
	return fmt.Sprintf("%d (edgefault run --seed %d replays its loss and jitter)", seed, seed)
}

// reportScale says what the time scale means in words.
func reportScale(s float64) string {
	switch {
	case !reportIsFinite(s) || s <= 0:
		return "not set: real time"
	case s == 1:
		return "1: real time"
	}
	return fmt.Sprintf("%s: one real minute stands for %s of scenario time", reportNumber(s), reportSpan(60*s))
}

// reportSpan is sec seconds in the largest unit that keeps it readable.
func reportSpan(sec float64) string {
	switch {
	case sec >= 3600:
		return strconv.FormatFloat(sec/3600, 'g', 3, 64) + " h"
	case sec >= 60:
		return strconv.FormatFloat(sec/60, 'g', 3, 64) + " min"
	}
	return strconv.FormatFloat(sec, 'g', 3, 64) + " s"
}

// reportTiming compares the wall time with the timeline's length.
func reportTiming(s ScenarioResult) string {
	t := fmt.Sprintf("wall time %s (set-up included), timeline %s", reportDuration(s.Duration), reportDuration(s.Timeline))
	if k := s.TimeScale; reportIsFinite(k) && k > 0 && k != 1 {
		t += " (" + reportSpan(s.Timeline.Seconds()*k) + " of scenario time)"
	}
	return t
}

// The HTML report's view of the data: every string final, every coordinate
// a formatted number.
type htmlReport struct {
	Pass      bool
	Started   string
	Duration  string
	Provider  string
	Passed    int
	Scenarios []htmlScenario
}

type htmlScenario struct {
	ID                                 string
	Name, Description, Source, Runtime string
	Scale, Timing, Error, Evidence     string
	ScaleNote                          string
	Fleet                              string // "provider netns, backend fallback"
	Sites                              string // what the sites ran
	Seed                               string // "" when none was used
	Pass                               bool
	VerdictsPassed                     int
	Verdicts                           []htmlVerdict
	Strip                              *chartStrip
	WindowLines                        []string
	Charts                             []nodeChart
	Failover                           bool
}

type htmlVerdict struct {
	Validator, Group, Summary string
	Lines                     []string
	Pass                      bool
	Numbers, Evidence         []string
}

// Chart geometry (SVG user units), shared by the template and the code.
const (
	chartW       = 900
	chartH       = 170
	chartLeft    = 70
	chartRight   = 830
	chartTop     = 8
	chartBottom  = 108
	chartGateY   = 112
	chartGateH   = 9
	chartFailY   = 124
	chartFailH   = 6
	stripLaneH   = 16
	stripTop     = 4
	stripAxisPad = 26
)

type chartRect struct {
	Class, X, Y, W, H, Title string
	// Text is a label drawn at TX, TY when it fits.
	Text, TX, TY string
}

type chartTick struct{ Pos, Label string }

type chartMark struct{ Class, X, Title string }

type nodeChart struct {
	Node, Role, Stats  string
	Empty              bool
	Shades             []chartRect
	XTicks             []chartTick
	YTicks, BTicks     []chartTick
	Throughput, Buffer string
	Gate, Failover     []chartRect
	Marks              []chartMark
}

type stripLane struct{ Y, Label, Full string }

type chartStrip struct {
	H, AxisY, LabelY string
	Lanes            []stripLane
	Rects            []chartRect
	XTicks           []chartTick
}

// chartX maps scenario time (seconds) to x across the plot.
type chartX struct{ t0, t1 float64 }

func (c chartX) at(sec float64) float64 {
	x := chartLeft + (sec-c.t0)/(c.t1-c.t0)*(chartRight-chartLeft)
	return math.Max(chartLeft, math.Min(chartRight, x))
}

// px formats a coordinate; a non-finite one (which the clamping should
// make impossible) becomes 0 rather than invalid SVG.
func px(v float64) string {
	if !reportIsFinite(v) {
		return "0"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func appendPx(b []byte, v float64) []byte {
	if !reportIsFinite(v) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, v, 'f', 1, 64)
}

// reportHTML renders r as one self-contained HTML page.
func reportHTML(r *Report) ([]byte, error) {
	v := htmlReport{
		Pass:     r.Pass,
		Started:  "not recorded",
		Duration: reportDuration(r.Duration),
		Provider: r.Provider,
	}
	if !r.Started.IsZero() {
		v.Started = r.Started.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if v.Provider == "" {
		v.Provider = "unknown"
	}
	for i, s := range r.Scenarios {
		if s.Pass {
			v.Passed++
		}
		v.Scenarios = append(v.Scenarios, htmlScenarioOf(i, s))
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("report.html: %w", err)
	}
	return b.Bytes(), nil
}

func htmlScenarioOf(i int, s ScenarioResult) htmlScenario {
	h := htmlScenario{
		ID:          fmt.Sprintf("scenario-%d", i+1),
		Name:        s.Name,
		Description: s.Description,
		Source:      s.Source,
		Runtime:     s.Runtime,
		Sites:       s.SitesSummary(),
		Scale:       reportScale(s.TimeScale),
		Seed:        seedWords(s.Seed),
		Timing:      reportTiming(s),
		Error:       s.Error,
		Evidence:    s.Evidence,
		Pass:        s.Pass,
	}
	if s.Provider != "" {
		h.Fleet = "provider " + s.Provider
		if s.Backend != "" {
			h.Fleet += ", shaping backend " + s.Backend
		}
		if s.Cluster != "" {
			h.Fleet += "; cluster " + s.Cluster + " (" + s.Placement + ")"
		}
		if r := s.Resources(); r != "" {
			h.Fleet += "; " + r
		}
	}
	if k := s.TimeScale; reportIsFinite(k) && k > 0 && k != 1 {
		h.ScaleNote = fmt.Sprintf("The x axes are run time; multiply by %s for scenario time.", reportNumber(k))
	}
	for _, vd := range s.Verdicts {
		if vd.Pass {
			h.VerdictsPassed++
		}
		hv := htmlVerdict{Validator: vd.Validator, Group: vd.Group, Summary: vd.Summary, Lines: vd.Lines, Pass: vd.Pass, Numbers: reportNumbers(vd.Numbers)}
		for _, e := range vd.Evidence {
			hv.Evidence = append(hv.Evidence, reportEvent(e, s.Started))
		}
		h.Verdicts = append(h.Verdicts, hv)
	}

	// One time axis for the whole scenario so the charts line up.
	nodes := make([]NodeSeries, len(s.Nodes))
	for j, n := range s.Nodes {
		byT := func(a, b Sample) int { return cmp.Compare(a.T, b.T) }
		if !slices.IsSortedFunc(n.Samples, byT) {
			n.Samples = slices.Clone(n.Samples)
			slices.SortStableFunc(n.Samples, byT)
		}
		nodes[j] = n
	}
	t0, t1 := 0.0, s.Timeline.Seconds()
	widen := func(sec float64) {
		t0, t1 = math.Min(t0, sec), math.Max(t1, sec)
	}
	for _, n := range nodes {
		if len(n.Samples) > 0 {
			widen(n.Samples[0].T.Seconds())
			widen(n.Samples[len(n.Samples)-1].T.Seconds())
		}
	}
	for _, w := range s.Windows {
		widen(w.Start.Seconds())
		if !windowOpen(w) { // an unset end can be far out of range
			widen(w.End.Seconds())
		}
	}
	// A mark can only be placed relative to the timeline's start.
	type mark struct {
		node string
		at   float64
		m    chartMark
	}
	var pending []mark
	for _, vd := range s.Verdicts {
		for _, m := range vd.Marks {
			if m.Time.IsZero() || s.Started.IsZero() {
				continue
			}
			at := m.Time.Sub(s.Started).Seconds()
			widen(at)
			cls, res := "mark-pass", "pass"
			if !m.Pass {
				cls, res = "mark-fail", "FAIL"
			}
			pending = append(pending, mark{m.Node, at, chartMark{
				Class: cls,
				Title: fmt.Sprintf("%s %s (%s): %s, t%+.1fs", vd.Validator, vd.Group, res, m.Label, at),
			}})
		}
	}
	if t1-t0 <= 0 {
		t1 = t0 + 1
	}
	xs := chartX{t0, t1}
	xTicks := chartTicksX(xs)
	marks := map[string][]chartMark{}
	for _, p := range pending {
		p.m.X = px(xs.at(p.at))
		marks[p.node] = append(marks[p.node], p.m)
	}

	h.Strip, h.WindowLines = chartStripOf(s.Windows, xs, xTicks)
	for _, n := range nodes {
		c := nodeChartOf(n, s.Windows, xs, marks[n.Node])
		c.XTicks = xTicks
		if c.Failover != nil {
			h.Failover = true
		}
		h.Charts = append(h.Charts, c)
	}
	return h
}

// windowOpen says the window has no end: the run stopped while it was on.
func windowOpen(w Window) bool { return w.End == 0 || w.End < w.Start }

// windowSpan is a window's start and end in seconds; an open one runs to
// the end of the axis.
func windowSpan(w Window, xs chartX) (float64, float64) {
	a, b := w.Start.Seconds(), w.End.Seconds()
	if windowOpen(w) {
		b = xs.t1
	}
	return a, b
}

func windowClass(w Window) string {
	if w.Outage {
		return "outage"
	}
	return "degr"
}

func windowTitle(w Window, xs chartX) string {
	a, b := windowSpan(w, xs)
	end := fmt.Sprintf("t%+.1fs", b)
	if windowOpen(w) {
		end = "the end"
	}
	g := ""
	if w.Group != "" {
		g = " (group " + w.Group + ")"
	}
	return fmt.Sprintf("t%+.1fs to %s, %s%s: %s", a, end, w.Target, g, w.What)
}

// chartStripOf lays out every window of the scenario, a lane per target,
// and lists them for print.
func chartStripOf(ws []Window, xs chartX, ticks []chartTick) (*chartStrip, []string) {
	if len(ws) == 0 {
		return nil, nil
	}
	lane := map[string]int{}
	st := &chartStrip{XTicks: ticks}
	var lines []string
	for _, w := range ws {
		i, ok := lane[w.Target]
		if !ok {
			i = len(st.Lanes)
			lane[w.Target] = i
			label := w.Target
			if r := []rune(label); len(r) > 12 {
				label = string(r[:11]) + "…"
			}
			st.Lanes = append(st.Lanes, stripLane{Y: px(stripTop + float64(i)*stripLaneH + stripLaneH/2), Label: label, Full: w.Target})
		}
		a, b := windowSpan(w, xs)
		x0, x1 := xs.at(a), xs.at(b)
		wd := math.Max(x1-x0, 1)
		y := stripTop + float64(i)*stripLaneH + 2
		rc := chartRect{
			Class: windowClass(w),
			X:     px(x0), Y: px(y), W: px(wd), H: px(stripLaneH - 4),
			Title: windowTitle(w, xs),
		}
		// About 5.5 units a character at the label's size.
		if n := int((wd - 6) / 5.5); n >= 4 {
			t := []rune(w.What)
			if len(t) > n {
				t = append(t[:n-1], '…')
			}
			rc.Text, rc.TX, rc.TY = string(t), px(x0+3), px(y+stripLaneH/2+1)
		}
		st.Rects = append(st.Rects, rc)
		lines = append(lines, rc.Title)
	}
	axis := stripTop + float64(len(st.Lanes))*stripLaneH + 2
	st.AxisY = px(axis)
	st.LabelY = px(axis + 14)
	st.H = px(axis + stripAxisPad)
	return st, lines
}

// nodeChartOf draws one node: its windows, throughput, buffer depth, gate
// and failover bands and verdict marks.
func nodeChartOf(n NodeSeries, ws []Window, xs chartX, marks []chartMark) nodeChart {
	c := nodeChart{Node: n.Node, Role: n.Role, Marks: marks, Empty: len(n.Samples) == 0}
	for _, w := range ws {
		// A node's path is its own link and its gateway's uplink.
		if w.Target != n.Node && (n.Gateway == "" || w.Target != n.Gateway) {
			continue
		}
		a, b := windowSpan(w, xs)
		x0, x1 := xs.at(a), xs.at(b)
		c.Shades = append(c.Shades, chartRect{
			Class: windowClass(w),
			X:     px(x0), Y: px(chartTop), W: px(math.Max(x1-x0, 1)), H: px(chartBottom - chartTop),
			Title: windowTitle(w, xs),
		})
	}

	// Scales: throughput on the left in Mbit/s, buffer depth on the right.
	maxMbit, maxBuf := 0.0, 0.0
	for _, sm := range n.Samples {
		if m := (sm.RxBps + sm.TxBps) / 1e6; reportIsFinite(m) {
			maxMbit = math.Max(maxMbit, m)
		}
		maxBuf = math.Max(maxBuf, float64(sm.BufferDepth))
	}
	topMbit, yTicks := chartTicksY(maxMbit)
	topBuf, bTicks := chartTicksY(maxBuf)
	c.YTicks, c.BTicks = yTicks, bTicks
	c.Stats = fmt.Sprintf("%d samples, peak %s Mbit/s, peak buffer %s records", len(n.Samples), reportNumber(math.Round(maxMbit*100)/100), reportNumber(maxBuf))
	y := func(v, top float64) float64 {
		v = math.Max(0, math.Min(top, v))
		return chartBottom - v/top*(chartBottom-chartTop)
	}

	// Paths are built here, numbers only; a non-finite throughput breaks
	// the line instead of drawing a false zero.
	thr := make([]byte, 0, len(n.Samples)*14)
	buf := make([]byte, 0, len(n.Samples)*14)
	pen := false
	for i, sm := range n.Samples {
		x := xs.at(sm.T.Seconds())
		if m := (sm.RxBps + sm.TxBps) / 1e6; reportIsFinite(m) {
			if pen {
				thr = append(thr, " L"...)
			} else {
				thr = append(thr, " M"...)
			}
			thr = appendPx(thr, x)
			thr = append(thr, ' ')
			thr = appendPx(thr, y(m, topMbit))
			if !pen {
				// A zero-length segment, which round caps draw as a dot,
				// so a reading between two gaps still shows.
				thr = append(thr, " l0 0"...)
			}
			pen = true
		} else {
			pen = false
		}
		if i == 0 {
			buf = append(buf, 'M')
		} else {
			buf = append(buf, " L"...)
		}
		buf = appendPx(buf, x)
		buf = append(buf, ' ')
		buf = appendPx(buf, y(float64(sm.BufferDepth), topBuf))
	}
	c.Throughput = strings.TrimSpace(string(thr))
	c.Buffer = string(buf)

	c.Gate = chartBand(n.Samples, xs, chartGateY, chartGateH, "gate", func(s Sample) string { return s.Gate },
		map[string]string{"open": "g-open", "closed": "g-closed", "unknown": "g-unknown", "": "g-none"})
	if slices.ContainsFunc(n.Samples, func(s Sample) bool { return s.Failover != "" }) {
		c.Failover = chartBand(n.Samples, xs, chartFailY, chartFailH, "failover", func(s Sample) string { return s.Failover },
			map[string]string{"primary": "f-primary", "alternate": "f-alternate", "degraded": "f-degraded", "": "f-none"})
	}
	return c
}

// chartBand turns a state per sample into one rectangle per run of equal
// states; each sample's state holds until the next sample.
func chartBand(ss []Sample, xs chartX, y, h float64, what string, state func(Sample) string, classes map[string]string) []chartRect {
	if len(ss) == 0 {
		return nil
	}
	// The last state is drawn for one typical interval.
	step := 0.0
	if len(ss) > 1 {
		step = (ss[len(ss)-1].T - ss[0].T).Seconds() / float64(len(ss)-1)
	}
	var out []chartRect
	for i := 0; i < len(ss); {
		j := i + 1
		for j < len(ss) && state(ss[j]) == state(ss[i]) {
			j++
		}
		a, b := ss[i].T.Seconds(), 0.0
		if j < len(ss) {
			b = ss[j].T.Seconds()
		} else {
			b = ss[j-1].T.Seconds() + step
		}
		st := state(ss[i])
		cls, ok := classes[st]
		if !ok {
			cls = "other"
		}
		label := st
		if label == "" {
			label = "no answer"
			if what == "failover" {
				label = "off"
			}
		}
		x0, x1 := xs.at(a), xs.at(b)
		out = append(out, chartRect{
			Class: cls,
			X:     px(x0), Y: px(y), W: px(math.Max(x1-x0, 0.5)), H: px(h),
			Title: fmt.Sprintf("%s %s, t%+.1fs to t%+.1fs", what, label, a, b),
		})
		i = j
	}
	return out
}

// chartNiceStep rounds raw up to 1, 2 or 5 times a power of ten.
func chartNiceStep(raw float64) float64 {
	if !reportIsFinite(raw) || raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// chartDecimals is how many decimals labels a step apart need.
func chartDecimals(step float64) int {
	return max(0, int(-math.Floor(math.Log10(step)+1e-9)))
}

// chartTicksX puts about eight labelled ticks along the time axis.
func chartTicksX(xs chartX) []chartTick {
	step := chartNiceStep((xs.t1 - xs.t0) / 8)
	dec := chartDecimals(step)
	var out []chartTick
	for i := math.Ceil(xs.t0/step - 1e-9); i*step <= xs.t1+step*1e-9 && len(out) < 50; i++ {
		v := i*step + 0 // + 0 turns -0 into 0, which would be labelled "-0"
		out = append(out, chartTick{Pos: px(xs.at(v)), Label: strconv.FormatFloat(v, 'f', dec, 64)})
	}
	return out
}

// chartTicksY picks a round top for a scale from 0 to max and about four
// ticks up to it.
func chartTicksY(maxV float64) (float64, []chartTick) {
	step := chartNiceStep(maxV / 4)
	top := step * math.Max(1, math.Ceil(maxV/step-1e-9))
	dec := chartDecimals(step)
	var out []chartTick
	for i := 0.0; i*step <= top*(1+1e-9); i++ {
		v := i * step
		out = append(out, chartTick{Pos: px(chartBottom - v/top*(chartBottom-chartTop)), Label: strconv.FormatFloat(v, 'f', dec, 64)})
	}
	return top, out
}

var reportTemplate = template.Must(template.New("report").Parse(reportPage))

// reportPage is the page template. It may load nothing: the report is read
// offline, archived by CI and printed.
//
//go:embed page.html.tmpl
var reportPage string
