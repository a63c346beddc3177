package harness

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// How often the harness probes an app's endpoint and scrapes its
// metrics, and how much of a metrics page it reads.
const (
	probeEvery    = 250 * time.Millisecond
	scrapeEvery   = 500 * time.Millisecond
	maxMetricPage = 4 << 20
)

// watchApps starts the harness's own observers of the apps that
// endpoint-answers and metric expectations name: probes of the app's
// endpoint from its vantage, scrapes of its metrics from its node. What
// they see is the harness's evidence, not the app's.
func (r *run) watchApps(ctx context.Context, wg *sync.WaitGroup) error {
	for _, x := range r.sc.Spec.Expect {
		if x.Validator != "endpoint-answers" && x.Validator != "metric" {
			continue
		}
		i := slices.IndexFunc(r.sc.Spec.Workloads, func(w scenarios.Workload) bool { return w.Name == x.Workload })
		if i < 0 {
			return fmt.Errorf("expectation %s names no workload %q", x.Validator, x.Workload) // scenario check refuses it first
		}
		w := r.sc.Spec.Workloads[i]
		on, err := r.sc.Spec.Resolve(w.On)
		if err != nil {
			return err
		}
		group, err := r.sc.Spec.Resolve(x.Group)
		if err != nil {
			return err
		}
		for _, m := range group {
			if m.Role != "node" || !slices.ContainsFunc(on, func(o scenarios.Member) bool { return o.Name == m.Name }) {
				continue
			}
			if x.Validator == "endpoint-answers" {
				err = r.probe(ctx, wg, m, w, x)
			} else {
				err = r.scrape(ctx, wg, m, w, x)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// every calls fn every period until ctx ends.
func every(ctx context.Context, wg *sync.WaitGroup, period time.Duration, fn func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			fn()
		}
	}()
}

// probe checks w's endpoint on m from x.From: a TCP connection, or an
// HTTP GET of x.HTTP answered 2xx.
func (r *run) probe(ctx context.Context, wg *sync.WaitGroup, m scenarios.Member, w scenarios.Workload, x scenarios.Expectation) error {
	vantage, addr := m.Gateway, net.JoinHostPort("", strconv.Itoa(w.Port))
	via := validators.ProbeVia(x)
	if x.From == "node" {
		vantage, addr = m.Name, net.JoinHostPort("127.0.0.1", strconv.Itoa(w.Port))
	} else {
		mm, err := r.f.Member(m.Name)
		if err != nil {
			return err
		}
		addr = net.JoinHostPort(mm.Address, strconv.Itoa(w.Port))
	}
	from, err := r.f.Host(vantage)
	if err != nil {
		return err
	}
	timeout := 2 * time.Second
	if d := x.MaxLatency.D(); d > 0 && 2*d < timeout {
		timeout = max(2*d, 200*time.Millisecond)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: from.DialContext, DisableKeepAlives: true}, Timeout: timeout}
	every(ctx, wg, probeEvery, func() {
		start := time.Now()
		var err error
		if x.HTTP != "" {
			err = httpOK(ctx, c, "http://"+addr+x.HTTP)
		} else {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			var conn net.Conn
			if conn, err = from.DialContext(dctx, "tcp", addr); err == nil {
				conn.Close()
			}
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		ms := time.Since(start).Milliseconds()
		if err != nil {
			r.ev.emit(m.Name, validators.ProbeComponent, validators.ProbeFailed, "workload", w.Name, "via", via, "from", vantage, "ms", ms, "err", err.Error())
			return
		}
		r.ev.emit(m.Name, validators.ProbeComponent, validators.ProbeAnswered, "workload", w.Name, "via", via, "from", vantage, "ms", ms)
	})
	return nil
}

// get2xx GETs url and returns its response if it is a 2xx (the caller
// closes the body).
func get2xx(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return resp, nil
}

// httpOK GETs url and wants a 2xx.
func httpOK(ctx context.Context, c *http.Client, url string) error {
	resp, err := get2xx(ctx, c, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// scrape reads w's metrics page on m from m itself and records the
// series x's bound selects.
func (r *run) scrape(ctx context.Context, wg *sync.WaitGroup, m scenarios.Member, w scenarios.Workload, x scenarios.Expectation) error {
	b, err := validators.ParseMetricBound(x.Metric)
	if err != nil {
		return err
	}
	host, err := r.f.Host(m.Name)
	if err != nil {
		return err
	}
	p := x.HTTP
	if p == "" {
		p = "/metrics"
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(w.Port)) + p
	c := &http.Client{Transport: &http.Transport{DialContext: host.DialContext, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	every(ctx, wg, scrapeEvery, func() {
		fams, err := scrapeOnce(ctx, c, url)
		if ctx.Err() != nil {
			return
		}
		kv := []any{"workload", w.Name, "bound", x.Metric}
		if err != nil {
			r.ev.emit(m.Name, validators.ScrapeComponent, validators.ScrapeFailed, append(kv, "err", err.Error())...)
			return
		}
		found := false
		if fam, ok := fams[b.Name]; ok {
			for _, s := range fam.GetMetric() {
				labels := map[string]string{}
				for _, l := range s.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				v, ok := sampleValue(s)
				if !ok || math.IsNaN(v) || math.IsInf(v, 0) || !b.Selects(labels) {
					continue
				}
				found = true
				r.ev.emit(m.Name, validators.ScrapeComponent, validators.ScrapeSample, append(kv, "series", validators.SeriesName(b.Name, labels), "value", v)...)
			}
		}
		if !found {
			names := make([]string, 0, len(fams))
			for n := range fams {
				names = append(names, n)
			}
			sort.Strings(names)
			if len(names) > 20 {
				names = append(names[:20], fmt.Sprintf("and %d more", len(names)-20))
			}
			r.ev.emit(m.Name, validators.ScrapeComponent, validators.ScrapeAbsent, append(kv, "exposes", strings.Join(names, ", "))...)
		}
	})
	return nil
}

// scrapeOnce reads one metrics page (Prometheus text format), at most
// maxMetricPage of it.
func scrapeOnce(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	resp, err := get2xx(ctx, c, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricPage))
	if err != nil {
		return nil, fmt.Errorf("GET %s: not the Prometheus text format: %w", url, err)
	}
	return fams, nil
}

// sampleValue is a series' value: a counter's, a gauge's, an untyped
// one's; a histogram or summary's count.
func sampleValue(s *dto.Metric) (float64, bool) {
	switch {
	case s.Gauge != nil:
		return s.Gauge.GetValue(), true
	case s.Counter != nil:
		return s.Counter.GetValue(), true
	case s.Untyped != nil:
		return s.Untyped.GetValue(), true
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount()), true
	case s.Summary != nil:
		return float64(s.Summary.GetSampleCount()), true
	}
	return 0, false
}
