package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/validators"
)

const reportXSS = "<script>alert(1)</script>"

var reportT0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// reportSeries samples a node every second for n seconds.
func reportSeries(node, role string, n int, sample func(i int) Sample) NodeSeries {
	ns := NodeSeries{Node: node, Role: role}
	for i := 0; i < n; i++ {
		s := sample(i)
		s.T = time.Duration(i) * time.Second
		ns.Samples = append(ns.Samples, s)
	}
	return ns
}

// reportFixture is a run of two scenarios: one passing, one with a failed
// verdict whose run also failed.
func reportFixture() *Report {
	steady := ScenarioResult{
		Name: "steady-link", Description: "a throttled link the gate should ride out",
		Source: "built-in", TimeScale: 1, Runtime: "gate on, buffer on disk, failover off",
		Started: reportT0.Add(5 * time.Second), Duration: 75 * time.Second, Timeline: 60 * time.Second,
		Provider: "existing", Cluster: "lab.kubeconfig at https://10.0.0.1:6443", Placement: "cloud: node vm-1; truck-1: node pi-1",
		Pass: true,
		Verdicts: []validators.Verdict{{
			Validator: "gate-follows-link", Group: "trucks", Pass: true,
			Summary: "truck-1: closed 2.1 s after the degradation (bound 15 s)",
			Numbers: map[string]float64{"closeAfterS": 2.1, "boundS": 15},
			Marks:   []validators.Mark{{Node: "truck-1", Time: reportT0.Add(17 * time.Second), Label: "closed", Pass: true}},
		}},
		Windows: []Window{{Target: "truck-1", Group: "trucks", What: "rate 3mbit delay 325ms loss 0.5%", Start: 10 * time.Second, End: 30 * time.Second}},
		Nodes: []NodeSeries{
			reportSeries("truck-1", "node", 60, func(i int) Sample {
				g := "open"
				if i >= 12 && i < 32 {
					g = "closed"
				}
				return Sample{Gate: g, RxBps: 40e6, TxBps: 2e6, BufferDepth: int64(i % 7)}
			}),
			reportSeries("gw-1", "gateway", 60, func(i int) Sample { return Sample{RxBps: 42e6} }),
		},
	}
	cut := ScenarioResult{
		Name: "uplink-cut", Description: reportXSS + " cut the uplink for 30 s",
		Source: "scenarios/uplink-cut.yaml", TimeScale: 60, Seed: 7, Runtime: "gate on, buffer on disk, failover on",
		Provider: "netns", Backend: "fallback",
		Started: reportT0.Add(90 * time.Second), Duration: 2 * time.Minute, Timeline: 90 * time.Second,
		Error: "timeline step 3: shaper: exit status 1",
		Verdicts: []validators.Verdict{
			{
				Validator: "buffer-drains", Group: "trucks", Pass: false,
				Summary: "truck-2: buffer still 120 records 30 s after restore (bound 10 s)",
				Numbers: map[string]float64{"records": 120, "afterS": 30},
				Evidence: []wire.Event{
					{Time: reportT0.Add(102300 * time.Millisecond), Node: "truck-2", Component: "gate", Event: "closed", Fields: map[string]any{"reason": "link down"}},
					{Time: reportT0.Add(150 * time.Second), Node: "truck-2", Component: "workload", Event: "buffered", Fields: map[string]any{"depth": float64(120)}},
				},
				Marks: []validators.Mark{{Node: "truck-2", Time: reportT0.Add(150 * time.Second), Label: "still buffered", Pass: false}},
			},
			{Validator: "gate-follows-link", Group: "trucks", Pass: true, Summary: "closed within bound"},
		},
		Windows: []Window{{Target: "gw-2", Group: "trucks", What: "outage", Outage: true, Start: 10 * time.Second, End: 40 * time.Second}},
		Nodes: []NodeSeries{
			reportSeries("truck-2", "node", 90, func(i int) Sample {
				s := Sample{Gate: "open", Failover: "primary", RxBps: 10e6}
				if i >= 10 && i < 40 {
					s = Sample{Gate: "closed", Failover: "alternate", BufferDepth: int64(4 * (i - 10))}
				}
				return s
			}),
			reportSeries("gw-2", "gateway", 90, func(i int) Sample { return Sample{Gate: "unknown"} }),
		},
	}
	return &Report{Started: reportT0, Duration: 4 * time.Minute, Provider: "netns", Scenarios: []ScenarioResult{steady, cut}}
}

type reportJUnitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestReportWrite(t *testing.T) {
	r := reportFixture()
	dir := filepath.Join(t.TempDir(), "reports", "run-1")
	paths, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"report.json", "junit.xml", "report.html"}
	if len(paths) != len(want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	for i, p := range paths {
		if p != filepath.Join(dir, want[i]) {
			t.Errorf("path %d = %s, want %s", i, p, want[i])
		}
	}
	// Exactly the three files: no temporary files left behind.
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 3 {
		t.Errorf("directory holds %v (%v), want the three files", ents, err)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("json", func(t *testing.T) {
		var back Report
		if err := json.Unmarshal(read("report.json"), &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, r) {
			t.Errorf("report.json does not round-trip:\n got %+v\nwant %+v", back, *r)
		}
	})

	t.Run("junit", func(t *testing.T) {
		var doc reportJUnitDoc
		if err := xml.Unmarshal(read("junit.xml"), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Tests != 4 || doc.Failures != 1 || doc.Errors != 1 {
			t.Errorf("tests/failures/errors = %d/%d/%d, want 4/1/1", doc.Tests, doc.Failures, doc.Errors)
		}
		if len(doc.Suites) != 2 || doc.Suites[0].Name != "steady-link" || doc.Suites[1].Tests != 3 {
			t.Fatalf("suites: %+v", doc.Suites)
		}
		props := map[string]string{}
		for _, p := range doc.Suites[1].Properties {
			props[p.Name] = p.Value
		}
		if props["timeScale"] != "60" || props["seed"] != "7" || props["source"] != "scenarios/uplink-cut.yaml" || props["runtime"] == "" {
			t.Errorf("properties: %v", props)
		}
		if _, ok := props["cluster"]; ok {
			t.Errorf("a fleet the harness made names a cluster: %v", props)
		}
		props = map[string]string{}
		for _, p := range doc.Suites[0].Properties {
			props[p.Name] = p.Value
		}
		if props["cluster"] != "lab.kubeconfig at https://10.0.0.1:6443" || props["placement"] != "cloud: node vm-1; truck-1: node pi-1" {
			t.Errorf("an existing cluster's properties: %v", props)
		}
		var failed, errored bool
		for _, c := range doc.Suites[1].Cases {
			if c.Classname != "edgefault.uplink-cut" {
				t.Errorf("classname %q", c.Classname)
			}
			if c.Failure != nil {
				failed = true
				if c.Name != "buffer-drains trucks" || c.Failure.Message != r.Scenarios[1].Verdicts[0].Summary {
					t.Errorf("failure: %q %+v", c.Name, c.Failure)
				}
				if !strings.Contains(c.Failure.Text, "t+12.3s truck-2 gate closed reason=\"link down\"") {
					t.Errorf("failure text lacks the evidence:\n%s", c.Failure.Text)
				}
			}
			if c.Error != nil {
				errored = true
				if c.Name != "run" || c.Error.Message != r.Scenarios[1].Error {
					t.Errorf("error: %q %+v", c.Name, c.Error)
				}
			}
		}
		if !failed || !errored {
			t.Errorf("uplink-cut: failure %v, error %v; want both", failed, errored)
		}
	})

	t.Run("html", func(t *testing.T) {
		h := string(read("report.html"))
		reportCheckHTML(t, h, 4)
		if strings.Contains(h, reportXSS) || !strings.Contains(h, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Error("the description is not escaped")
		}
		if !strings.Contains(h, "FAIL") {
			t.Error("no FAIL in the report")
		}
		text := reportUnescape(h)
		for _, s := range []string{
			"provider netns",
			"provider netns, shaping backend fallback",
			"provider existing; cluster lab.kubeconfig at https://10.0.0.1:6443 (cloud: node vm-1; truck-1: node pi-1)",
			"one real minute stands for 1 h of scenario time",
			"timeline 1m30s (1.5 h of scenario time)",
			"timeline step 3: shaper: exit status 1",
			"t+12.3s truck-2 gate closed reason=\"link down\"",
			"records=120",
			"gw-2 (group trucks): outage",
			"verdict mark: fail",
			"buffer-drains trucks (FAIL): still buffered, t+60.0s",
			"7 (edgefault run --seed 7 replays its loss and jitter)",
		} {
			if !strings.Contains(text, s) {
				t.Errorf("report.html lacks %q", s)
			}
		}
		// Failover is drawn only where a node reported it: truck-2.
		if n := strings.Count(h, `class="f-alternate"`); n != 1 {
			t.Errorf("%d alternate failover segments, want 1", n)
		}
	})
}

// reportUnescape undoes the few entities html/template writes.
func reportUnescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&#43;", "+", "&amp;", "&").Replace(s)
}

// reportCheckHTML checks what every report page must be: self-contained,
// free of NaN, a well-formed chart per node.
func reportCheckHTML(t *testing.T, h string, nodes int) {
	t.Helper()
	for _, bad := range []string{"NaN", "src=", `href="http`, "<link", "<script", "url("} {
		if strings.Contains(h, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	if n := strings.Count(h, `<svg class="node-chart"`); n != nodes {
		t.Errorf("%d node charts, want %d", n, nodes)
	}
	// Every SVG must parse as XML on its own.
	for rest := h; ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated <svg>")
		}
		svg := rest[i : i+j+len("</svg>")]
		rest = rest[i+j:]
		if strings.Contains(svg, "Inf") {
			t.Errorf("SVG holds Inf: %.200s", svg)
		}
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("SVG is not well-formed: %v\n%.300s", err, svg)
			}
		}
	}
}

func TestReportWriteNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "taken")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir string }{
		{"regular file", file},
		{"under a regular file", filepath.Join(file, "reports")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths, err := reportFixture().Write(tc.dir)
			if err == nil || !strings.Contains(err.Error(), tc.dir) {
				t.Errorf("Write(%s) = %v, %v; want an error naming the path", tc.dir, paths, err)
			}
			if len(paths) != 0 {
				t.Errorf("paths %v", paths)
			}
		})
	}
}

func TestReportEdgeCases(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name string
		s    ScenarioResult
	}{
		{"no samples, zero timeline", ScenarioResult{Name: "empty", Nodes: []NodeSeries{{Node: "a"}, {Node: "b", Samples: []Sample{}}}}},
		{"one sample at zero", ScenarioResult{Name: "one", Nodes: []NodeSeries{{Node: "a", Samples: []Sample{{Gate: "open", RxBps: 1e6}}}}}},
		{"all samples at one instant", ScenarioResult{Name: "same", Timeline: 0, Nodes: []NodeSeries{{Node: "a", Samples: []Sample{{T: time.Second}, {T: time.Second, Gate: "closed"}}}}}},
		{"not a number", ScenarioResult{
			Name: "nan", TimeScale: nan, Timeline: 10 * time.Second, Started: reportT0,
			Verdicts: []validators.Verdict{{
				Validator: "v", Numbers: map[string]float64{"x": nan, "y": inf, "z": 1},
				Evidence: []wire.Event{{Time: reportT0, Node: "a", Fields: map[string]any{"f": nan}}},
			}},
			Nodes: []NodeSeries{{Node: "a", Samples: []Sample{{RxBps: nan}, {T: time.Second, RxBps: inf}, {T: 2 * time.Second, TxBps: -inf}, {T: 3 * time.Second, RxBps: 5e6}}}},
		}},
		{"negative and unsorted", ScenarioResult{
			Name: "odd", TimeScale: -3, Timeline: 5 * time.Second, Started: reportT0,
			Verdicts: []validators.Verdict{{Validator: "v", Marks: []validators.Mark{
				{Node: "a", Time: reportT0.Add(-2 * time.Second)}, {Node: "a"}, {Node: "ghost", Time: reportT0},
			}}},
			Windows: []Window{
				{Target: "a", What: "never ended", Start: 3 * time.Second},
				{Target: "a", What: "no end time", Start: 2 * time.Second, End: time.Time{}.Sub(reportT0)},
				{Target: "a", What: "instant", Start: time.Second, End: time.Second},
			},
			Nodes: []NodeSeries{{Node: "a", Samples: []Sample{
				{T: 4 * time.Second, RxBps: -1e6, BufferDepth: -5, Failover: "weird"}, {T: -time.Second, Gate: "sideways"}, {T: 2 * time.Second},
			}}},
		}},
		{"no nodes, no verdicts, failed", ScenarioResult{Name: "bare", Windows: []Window{{Target: "gw", What: "outage", Outage: true, End: time.Second}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Scenarios: []ScenarioResult{tc.s}}
			dir := t.TempDir()
			if _, err := r.Write(dir); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(b, &back); err != nil || len(back.Scenarios) != 1 || len(back.Scenarios[0].Nodes) != len(tc.s.Nodes) {
				t.Errorf("report.json: %v\n%s", err, b)
			}
			var doc reportJUnitDoc
			if b, err := os.ReadFile(filepath.Join(dir, "junit.xml")); err != nil || xml.Unmarshal(b, &doc) != nil {
				t.Errorf("junit.xml: %v\n%s", err, b)
			}
			if !tc.s.Pass && doc.Failures+doc.Errors == 0 {
				t.Error("a failed scenario shows no failure in junit.xml")
			}
			h, err := os.ReadFile(filepath.Join(dir, "report.html"))
			if err != nil {
				t.Fatal(err)
			}
			reportCheckHTML(t, string(h), len(tc.s.Nodes))
		})
	}
}

func TestReportAxis(t *testing.T) {
	node := []NodeSeries{{Node: "a"}}
	for _, tc := range []struct {
		name        string
		s           ScenarioResult
		first, last string
	}{
		{"empty", ScenarioResult{Nodes: node}, "0.0", "1.0"},
		{"timeline", ScenarioResult{Timeline: time.Minute, Nodes: node}, "0", "60"},
		{"sample before the start", ScenarioResult{Timeline: 5 * time.Second, Nodes: []NodeSeries{{Node: "a", Samples: []Sample{{T: -time.Second}}}}}, "-1", "5"},
		// The runner stores an unfinished window's end as zero time minus
		// the start: it must not stretch the axis.
		{"window never ended", ScenarioResult{Timeline: 10 * time.Second, Started: reportT0, Nodes: node,
			Windows: []Window{{Target: "a", Start: 2 * time.Second, End: time.Time{}.Sub(reportT0)}}}, "0", "10"},
		{"mark after the end", ScenarioResult{Timeline: 10 * time.Second, Started: reportT0, Nodes: node,
			Verdicts: []validators.Verdict{{Marks: []validators.Mark{{Node: "a", Time: reportT0.Add(14 * time.Second)}}}}}, "0", "14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks := htmlScenarioOf(0, tc.s).Charts[0].XTicks
			if len(ticks) < 2 || ticks[0].Label != tc.first || ticks[len(ticks)-1].Label != tc.last {
				t.Errorf("ticks %v, want %s to %s", ticks, tc.first, tc.last)
			}
		})
	}
}

// reportBig is one scenario of nodes nodes sampled n times each, with a gate
// that flaps.
func reportBig(nodes, n int) *Report {
	s := ScenarioResult{Name: "big", TimeScale: 60, Timeline: time.Duration(n) * 200 * time.Millisecond, Started: reportT0}
	for k := 0; k < nodes; k++ {
		ns := NodeSeries{Node: fmt.Sprintf("truck-%d", k), Role: "node"}
		for i := 0; i < n; i++ {
			g := "open"
			if (i/37)%2 == 1 {
				g = "closed"
			}
			ns.Samples = append(ns.Samples, Sample{
				T: time.Duration(i) * 200 * time.Millisecond, Gate: g, Failover: "primary",
				RxBps: 20e6 + 10e6*math.Sin(float64(i)/50), TxBps: 1e6, BufferDepth: int64(i % 500),
			})
		}
		s.Nodes = append(s.Nodes, ns)
		s.Windows = append(s.Windows, Window{Target: ns.Node, What: "outage", Outage: true, Start: time.Duration(k+1) * 10 * time.Second, End: time.Duration(k+2) * 10 * time.Second})
	}
	return &Report{Started: reportT0, Scenarios: []ScenarioResult{s}}
}

func TestReportManySamples(t *testing.T) {
	r := reportBig(4, 5000)
	start := time.Now()
	h, err := reportHTML(r)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("4 nodes of 5000 samples: %v, %d KiB", took, len(h)/1024)
	// Generous against a loaded CI machine; it takes a few milliseconds.
	if took > time.Second {
		t.Errorf("rendering took %v", took)
	}
	reportCheckHTML(t, string(h), 4)
	if !bytes.Contains(h, []byte(`class="g-closed"`)) {
		t.Error("no closed gate drawn")
	}
}

func BenchmarkReportHTML(b *testing.B) {
	r := reportBig(4, 5000)
	for b.Loop() {
		if _, err := reportHTML(r); err != nil {
			b.Fatal(err)
		}
	}
}
