package validators

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// MetricBound is a bound on a Prometheus series, as a scenario writes it:
//
//	app_queue_depth <= 100
//	app_sent_total{stream="telemetry",node!="x"} > 0
//
// a metric name, optional label matchers (= or !=, values in double
// quotes), an operator (< <= > >= == !=) and a number. Not PromQL: one
// series family, one comparison, judged on every sample of every series
// the matchers select.
type MetricBound struct {
	Name     string
	Matchers []LabelMatcher
	Op       string
	Value    float64
}

// LabelMatcher selects series by a label's value.
type LabelMatcher struct {
	Label, Value string
	Not          bool
}

var (
	metricBoundRE = regexp.MustCompile(`^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)
	matcherRE     = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$`)
)

// ParseMetricBound parses s, saying what is wrong and what a bound looks
// like.
func ParseMetricBound(s string) (MetricBound, error) {
	const like = `write it as NAME{LABEL="VALUE",...} OP NUMBER, e.g. app_queue_depth{stream="telemetry"} <= 100 (OP one of < <= > >= == !=)`
	m := metricBoundRE.FindStringSubmatch(s)
	if m == nil {
		return MetricBound{}, fmt.Errorf("metric %q: %s", s, like)
	}
	b := MetricBound{Name: m[1], Op: m[3]}
	v, err := strconv.ParseFloat(m[4], 64)
	if err != nil || math.IsNaN(v) {
		return MetricBound{}, fmt.Errorf("metric %q: %q is not a number: %s", s, m[4], like)
	}
	b.Value = v
	if body := strings.TrimSuffix(strings.TrimPrefix(m[2], "{"), "}"); strings.TrimSpace(body) != "" {
		for _, part := range splitMatchers(body) {
			mm := matcherRE.FindStringSubmatch(part)
			if mm == nil {
				return MetricBound{}, fmt.Errorf("metric %q: label matcher %q: %s", s, strings.TrimSpace(part), like)
			}
			val, err := strconv.Unquote(`"` + mm[3] + `"`)
			if err != nil {
				return MetricBound{}, fmt.Errorf("metric %q: label matcher %q: %v", s, part, err)
			}
			b.Matchers = append(b.Matchers, LabelMatcher{Label: mm[1], Value: val, Not: mm[2] == "!="})
		}
	}
	return b, nil
}

// splitMatchers splits on the commas outside quotes.
func splitMatchers(s string) []string {
	var out []string
	start, quoted, esc := 0, false, false
	for i, r := range s {
		switch {
		case esc:
			esc = false
		case r == '\\':
			esc = true
		case r == '"':
			quoted = !quoted
		case r == ',' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if rest := s[start:]; strings.TrimSpace(rest) != "" || len(out) == 0 {
		out = append(out, rest)
	}
	return out
}

// Selects says whether a series of the bound's name with these labels is
// one it judges.
func (b MetricBound) Selects(labels map[string]string) bool {
	for _, m := range b.Matchers {
		if (labels[m.Label] == m.Value) == m.Not {
			return false
		}
	}
	return true
}

// Holds says whether v keeps the bound.
func (b MetricBound) Holds(v float64) bool {
	switch b.Op {
	case "<":
		return v < b.Value
	case "<=":
		return v <= b.Value
	case ">":
		return v > b.Value
	case ">=":
		return v >= b.Value
	case "==":
		return v == b.Value
	case "!=":
		return v != b.Value
	}
	return false
}

// SeriesName writes a series as Prometheus does: name{a="x",b="y"}.
func SeriesName(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(labels[k])
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}
