// Package impair is the impairment model shared by the scenario format, the
// CLI and every shaping backend: what to do to one link (rate, delay and
// jitter, loss, outage; which direction; which networks), how to validate it
// and how to print it. It has no kernel dependency (no netlink, nftables or
// ledger), so anything that only describes impairments can import it
// without linking the machinery that applies them; package shaper applies
// them.
package impair

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/edgefault/edgefault/units"
)

// Direction says which traffic of a link an impairment acts on, seen from
// the link's own end (the node): Egress is what the node sends, Ingress what
// it receives.
type Direction string

// Directions.
const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
	Both    Direction = "both"
)

// ParseDirection parses "egress", "ingress" or "both".
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(strings.ToLower(strings.TrimSpace(s))); d {
	case Egress, Ingress, Both:
		return d, nil
	case "":
		return Both, nil
	}
	return "", fmt.Errorf("direction %q: use egress, ingress or both", s)
}

// Has reports whether d covers one.
func (d Direction) Has(one Direction) bool { return d == Both || d == one }

// Impairment describes what to do to one link. The zero value impairs
// nothing.
type Impairment struct {
	// Rate caps throughput (bits/s, measured at the link layer) in every
	// direction impaired; 0 = no cap.
	Rate units.Rate `json:"rate,omitempty"`
	// UpRate and DownRate, when set, cap one direction in place of Rate:
	// up is what the link's end sends (egress), down what it receives
	// (ingress). Cellular, satellite and DSL links are asymmetric.
	UpRate   units.Rate `json:"upRate,omitempty"`
	DownRate units.Rate `json:"downRate,omitempty"`
	// Delay is added one-way latency per direction impaired.
	Delay time.Duration `json:"delay,omitempty"`
	// Jitter varies Delay within [Delay-Jitter, Delay+Jitter]. With the
	// fallback backend the variation is a bounded random walk (uniform in
	// the long run, mean Delay, correlated over short times) that never
	// reorders packets; with netem it is netem's uniform jitter, which may
	// reorder. See docs/shaping.md.
	Jitter time.Duration `json:"jitter,omitempty"`
	// Loss drops this percentage of packets at random (0-100).
	Loss float64 `json:"loss,omitempty"`
	// Seed, when not 0, is what loss and jitter draw from: the same seed on
	// the same packets drops the same ones and delays them alike, so a run
	// can be replayed. 0 draws from the kernel's (or the process's) random
	// numbers. Only the fallback backend honours it (its NFQUEUE delayer
	// draws); netem's draws are the kernel's.
	Seed uint64 `json:"seed,omitempty"`
	// Outage cuts the link: nothing passes in the directions impaired.
	Outage bool `json:"outage,omitempty"`
	// Targets restricts the impairment to traffic to (egress) or from
	// (ingress) these networks; empty means all traffic.
	Targets []netip.Prefix `json:"targets,omitempty"`
	// Direction is egress, ingress or both (the default).
	Direction Direction `json:"direction,omitempty"`
}

// IsZero reports whether the impairment does nothing.
func (i Impairment) IsZero() bool {
	return i.Rate == 0 && i.UpRate == 0 && i.DownRate == 0 && i.Delay == 0 && i.Jitter == 0 && i.Loss == 0 && !i.Outage
}

// Validate checks the impairment and fills in defaults (Direction).
func (i *Impairment) Validate() error {
	if i.Direction == "" {
		i.Direction = Both
	}
	if _, err := ParseDirection(string(i.Direction)); err != nil {
		return err
	}
	if i.Loss < 0 || i.Loss > 100 {
		return fmt.Errorf("loss %.3g%% is out of range: it must be between 0%% and 100%%", i.Loss)
	}
	if i.Delay < 0 || i.Jitter < 0 {
		return fmt.Errorf("delay and jitter must not be negative (delay %v, jitter %v)", i.Delay, i.Jitter)
	}
	if i.Jitter > i.Delay {
		return fmt.Errorf("jitter %v is larger than delay %v: packets cannot leave before they arrive; raise the delay or lower the jitter", i.Jitter, i.Delay)
	}
	if i.Delay > time.Minute {
		return fmt.Errorf("delay %v is longer than a minute: for a link that passes nothing use an outage", i.Delay)
	}
	for _, r := range []struct {
		name string
		v    units.Rate
	}{{"rate", i.Rate}, {"up rate", i.UpRate}, {"down rate", i.DownRate}} {
		if r.v < 0 || (r.v != 0 && r.v < 8*units.Kbit) {
			return fmt.Errorf("%s %v is below 8kbit: a link that slow carries no useful traffic; use an outage instead", r.name, r.v)
		}
	}
	if i.UpRate != 0 && !i.Direction.Has(Egress) {
		return fmt.Errorf("an up rate (%v) on a link impaired only %s: up is what the link sends (egress); drop it or impair both directions", i.UpRate, i.Direction)
	}
	if i.DownRate != 0 && !i.Direction.Has(Ingress) {
		return fmt.Errorf("a down rate (%v) on a link impaired only %s: down is what the link receives (ingress); drop it or impair both directions", i.DownRate, i.Direction)
	}
	for _, t := range i.Targets {
		if !t.IsValid() {
			return fmt.Errorf("invalid target network")
		}
		if !t.Addr().Is4() {
			return fmt.Errorf("target %v: only IPv4 targets are supported", t)
		}
	}
	return nil
}

// RateOf is the rate cap of one direction (Egress: up, Ingress: down); 0
// when that direction is not capped.
func (i Impairment) RateOf(d Direction) units.Rate {
	dir := i.Direction
	if dir == "" {
		dir = Both
	}
	if !dir.Has(d) {
		return 0
	}
	if d == Egress && i.UpRate != 0 {
		return i.UpRate
	}
	if d == Ingress && i.DownRate != 0 {
		return i.DownRate
	}
	return i.Rate
}

// String describes the impairment in the CLI's words.
func (i Impairment) String() string {
	if i.IsZero() {
		return "none"
	}
	var p []string
	if i.Outage {
		p = append(p, "outage")
	}
	up, down := i.RateOf(Egress), i.RateOf(Ingress)
	oneWay := i.Direction == Egress || i.Direction == Ingress
	switch {
	case up == 0 && down == 0:
	case up == down || oneWay: // both alike, or the one impaired
		p = append(p, "rate "+max(up, down).String())
	default:
		var r []string
		if down != 0 {
			r = append(r, down.String()+" down")
		}
		if up != 0 {
			r = append(r, up.String()+" up")
		}
		p = append(p, "rate "+strings.Join(r, " / "))
	}
	if i.Delay != 0 {
		s := "delay " + i.Delay.String()
		if i.Jitter != 0 {
			s += "±" + i.Jitter.String()
		}
		p = append(p, s)
	}
	if i.Loss != 0 {
		p = append(p, fmt.Sprintf("loss %g%%", i.Loss))
	}
	if i.Seed != 0 && (i.Loss != 0 || i.Jitter != 0) {
		p = append(p, fmt.Sprintf("seed %d", i.Seed))
	}
	d := i.Direction
	if d == "" {
		d = Both
	}
	p = append(p, "direction "+string(d))
	for _, t := range i.Targets {
		p = append(p, "to "+t.String())
	}
	return strings.Join(p, ", ")
}

// ParseTargets parses comma-separated or repeated CIDRs (a bare address
// means /32).
func ParseTargets(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !strings.Contains(part, "/") {
				a, err := netip.ParseAddr(part)
				if err != nil {
					return nil, fmt.Errorf("target %q is not an address or CIDR (e.g. 10.0.0.0/24)", part)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("target %q is not a CIDR (e.g. 10.0.0.0/24): %w", part, err)
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}
