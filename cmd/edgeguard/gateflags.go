package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/units"
	"github.com/spf13/pflag"
)

// gateFlags are the speed gate's settings, shared by serve and gate wait.
type gateFlags struct {
	server, minDown, minUp, hysteresis, budget  string
	maxLatency, interval, window, full, confirm time.Duration
	spread                                      time.Duration
	failOpen, noFull                            bool
	// site is the runtimes sharing the uplink (serve sets it).
	site gate.Site
}

// names are the flags register adds (gate wait --from refuses them).
var gateFlagNames = []string{"server", "min-download", "max-latency", "min-upload", "hysteresis", "probe-budget", "interval", "probe-window", "full-duration", "confirm-duration", "confirm-spread", "no-full-test", "fail-open"}

func (f *gateFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "speed-test server URL, e.g. http://100.64.0.1:8080 (edgeguard speedserver), or 'auto' for Ookla's public list (needs the internet)")
	fs.StringVar(&f.minDown, "min-download", "", "close the gate below this download rate, with a unit: 5mbit, 512kbit, 2MB/s")
	fs.DurationVar(&f.maxLatency, "max-latency", 0, "close the gate above this round trip (0: no bound)")
	fs.StringVar(&f.minUp, "min-upload", "", "close the gate below this upload rate (optional; speedtest-go's upload is unreliable at low rates)")
	fs.StringVar(&f.hysteresis, "hysteresis", "20%", "margin above the thresholds needed to reopen, so the gate does not flap")
	fs.StringVar(&f.budget, "probe-budget", "2%", "bytes probing may spend: a share of the measured capacity (2%) or a rate (16kB/s, 100kbit)")
	fs.DurationVar(&f.interval, "interval", 2*time.Second, "shortest time between probes (the budget may stretch it)")
	fs.DurationVar(&f.window, "probe-window", 50*time.Millisecond, "a probe moves what the reopen rate carries in this time or in two round trips, whichever is longer (at least 32KiB)")
	fs.DurationVar(&f.full, "full-duration", 10*time.Second, "how long a full speed test measures each direction")
	fs.DurationVar(&f.spread, "confirm-spread", 500*time.Millisecond, "the longest random pause before a confirmation, so that a region's gates returning together do not test the speed server all at once")
	fs.DurationVar(&f.confirm, "confirm-duration", 2*time.Second, "how long the full test that confirms an opening (the first at start too) measures each direction (a reading between the thresholds, or short of good before any test measured the link, is confirmed again at --full-duration)")
	fs.BoolVar(&f.noFull, "no-full-test", false, "never run full speed tests (probes alone decide)")
	fs.BoolVar(&f.failOpen, "fail-open", false, "treat 'unknown' (cannot measure) as open; default is to fail closed")
}

// open makes the gate the flags describe, with its event log (close it
// when done).
func (f *gateFlags) open(g *globals) (*gate.Gate, *events.Log, error) {
	cfg, err := f.config(g)
	if err != nil {
		return nil, nil, err
	}
	cfg.Events = g.openEvents("gate")
	gt, err := gate.New(cfg)
	if err != nil {
		cfg.Events.Close()
		return nil, nil, err
	}
	return gt, cfg.Events, nil
}

func (f *gateFlags) config(g *globals) (gate.Config, error) {
	c := gate.Config{Server: f.server, MaxLatency: f.maxLatency, Interval: f.interval, ProbeWindow: f.window,
		FullDuration: f.full, ConfirmDuration: f.confirm, ConfirmSpread: f.spread, NoFullTest: f.noFull, FailOpen: f.failOpen, Node: g.node, Logger: g.log, Site: f.site}
	d, err := g.dial()
	if err != nil {
		return c, err
	}
	c.Dial = d.DialContext
	if f.minDown == "" {
		return c, fmt.Errorf("--min-download is required, with a unit: e.g. --min-download 5mbit")
	}
	if c.MinDownload, err = units.ParseRate(f.minDown); err != nil {
		return c, fmt.Errorf("--min-download: %w", err)
	}
	if f.minUp != "" {
		if c.MinUpload, err = units.ParseRate(f.minUp); err != nil {
			return c, fmt.Errorf("--min-upload: %w", err)
		}
	}
	h, err := units.Percent("--hysteresis", f.hysteresis)
	if err != nil {
		return c, err
	}
	c.Hysteresis = h / 100
	if c.Hysteresis == 0 {
		c.Hysteresis = 1e-9 // 0% means none, not the default
	}
	if strings.HasPrefix(strings.TrimSpace(f.budget), "-") {
		return c, fmt.Errorf("--probe-budget %q is negative: give a share like 2%% or a rate like 16kB/s", f.budget)
	} else if strings.HasSuffix(strings.TrimSpace(f.budget), "%") {
		p, err := units.Percent("--probe-budget", f.budget)
		if err != nil {
			return c, err
		}
		if p == 0 {
			return c, fmt.Errorf("--probe-budget 0%%: the gate cannot measure for free; give e.g. 2%%")
		}
		c.BudgetFraction = p / 100
	} else {
		r, err := units.ParseRate(f.budget)
		if err != nil {
			return c, fmt.Errorf("--probe-budget: %w (or give a share of capacity, e.g. 2%%)", err)
		}
		c.BudgetBytesPerSec = float64(r) / 8
	}
	if f.maxLatency < 0 {
		return c, fmt.Errorf("--max-latency %s is negative (0: no latency bound)", f.maxLatency)
	}
	for name, d := range map[string]time.Duration{"--interval": f.interval, "--probe-window": f.window, "--full-duration": f.full, "--confirm-duration": f.confirm} {
		if d <= 0 {
			return c, fmt.Errorf("%s %s must be more than 0", name, d)
		}
	}
	if c.Server == "" {
		return c, fmt.Errorf("--server is required: the URL of a speed-test server (edgeguard speedserver), or auto")
	}
	if c.Server != gate.Auto {
		if _, err := gate.ParseServer(c.Server); err != nil {
			return c, fmt.Errorf("--server: %w", err)
		}
	}
	return c, c.Validate()
}
