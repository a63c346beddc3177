package serve

import (
	"net/http"

	"github.com/edgefault/edgefault/runtime/failover"
	"github.com/prometheus/client_golang/prometheus"
)

// WithFailover serves failover's state at GET /v1/failover and in metrics.
func WithFailover(f *failover.Failover) Option {
	return func(mux *http.ServeMux, reg *prometheus.Registry) {
		mux.HandleFunc("GET /v1/failover", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, f.Status()) })
		reg.MustRegister(failoverCollector{f})
	}
}

var (
	descFoState    = prometheus.NewDesc("edgeguard_failover_state", "1 for failover's current state (primary, alternate, degraded), 0 for the others.", []string{"state"}, nil)
	descFoSwitches = prometheus.NewDesc("edgeguard_failover_switches_total", "State changes since start.", nil, nil)
	descFoHealthy  = prometheus.NewDesc("edgeguard_failover_primary_healthy", "1 when the last probe through the primary answered.", nil, nil)
	descFoMarked   = prometheus.NewDesc("edgeguard_failover_marked", "1 when the node's marks in the cluster match the state.", nil, nil)
)

type failoverCollector struct{ f *failover.Failover }

func (c failoverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFoState, descFoSwitches, descFoHealthy, descFoMarked} {
		ch <- d
	}
}

func (c failoverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.Status()
	for _, st := range []failover.State{failover.Primary, failover.Alternate, failover.Degraded} {
		ch <- prometheus.MustNewConstMetric(descFoState, prometheus.GaugeValue, b2f(s.State == st), string(st))
	}
	ch <- prometheus.MustNewConstMetric(descFoSwitches, prometheus.CounterValue, float64(s.Switches))
	ch <- prometheus.MustNewConstMetric(descFoHealthy, prometheus.GaugeValue, b2f(s.PrimaryHealthy))
	ch <- prometheus.MustNewConstMetric(descFoMarked, prometheus.GaugeValue, b2f(s.Marked))
}
