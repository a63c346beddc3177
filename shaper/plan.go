package shaper

import (
	"net/netip"
	"reflect"
	"time"
)

// dirPlan is what one direction of a link needs, after every effect has
// contributed to it. The executor (tc.go, nft.go, delayer.go) installs it.
type dirPlan struct {
	Dir     Direction      `json:"dir"`
	Targets []netip.Prefix `json:"targets,omitempty"`
	// Rate is enforced by tbf (all traffic) or htb (targets only).
	Rate Rate `json:"rate,omitempty"`
	// Netem, when set, is a netem leaf under the rate limiter (netem backend).
	Netem *netemParams `json:"netem,omitempty"`
	// DropPercent drops packets with nftables at the far end (fallback loss;
	// 100 for an outage that cannot be made by taking the peer down).
	DropPercent float64 `json:"dropPercent,omitempty"`
	// Delay and Jitter are applied by the NFQUEUE delayer (fallback backend).
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	// QueueLoss is loss drawn by the delayer from Seed (a seeded
	// impairment), in place of DropPercent's kernel random numbers.
	QueueLoss float64 `json:"queueLoss,omitempty"`
	// Seed is what the delayer's loss and jitter draw from (0: random).
	Seed uint64 `json:"seed,omitempty"`
	// Major is the handle major of the installed qdisc tree (1 or 2).
	Major uint16 `json:"major,omitempty"`
}

func (d *dirPlan) needsTC() bool      { return d.Rate != 0 || d.Netem != nil }
func (d *dirPlan) needsDelayer() bool { return d.Delay != 0 || d.Jitter != 0 || d.QueueLoss != 0 }

// delayerArgs is what a delayer is started with; a running one serves a
// new plan only if they are the same.
type delayerArgs struct {
	Delay, Jitter time.Duration
	Loss          float64
	Seed          uint64
}

func (d *dirPlan) delayerArgs() delayerArgs {
	return delayerArgs{Delay: d.Delay, Jitter: d.Jitter, Loss: d.QueueLoss, Seed: d.Seed}
}

// dirSeed is the seed of one direction: the two directions of a link draw
// different patterns from one impairment's seed.
func dirSeed(seed uint64, d Direction) uint64 {
	if seed == 0 || d == Egress {
		return seed
	}
	return seed ^ 0x9e3779b97f4a7c15
}

// tcEqual reports whether the tc part of two plans is the same, so a
// re-apply does not reset queues for nothing.
func (d *dirPlan) tcEqual(o *dirPlan) bool {
	if o == nil {
		return !d.needsTC()
	}
	return d.Rate == o.Rate && reflect.DeepEqual(d.Netem, o.Netem) && reflect.DeepEqual(d.Targets, o.Targets)
}

// plan is the whole change for one target.
type plan struct {
	Egress  dirPlan `json:"egress"`
	Ingress dirPlan `json:"ingress"`
	// PeerDown takes the peer's interface down: a full outage that keeps
	// both ends' routes and TCP connections alive.
	PeerDown bool `json:"peerDown,omitempty"`
	// CapGSO limits the link's GSO super-packets to one segment, so random
	// drops and per-destination htb classes act on real packets rather
	// than 64 KB bursts.
	CapGSO bool `json:"capGSO,omitempty"`
}

func (p *plan) dir(d Direction) *dirPlan {
	if d == Egress {
		return &p.Egress
	}
	return &p.Ingress
}

// effect is one kind of impairment. Each lives in its own file
// (effect_*.go) and adds what it needs to the plan for the chosen backend;
// docs/impairments.md explains how to add one.
type effect interface {
	contribute(imp Impairment, env planEnv, p *plan)
}

// planEnv is what effects may consult: the backend and whether the link's
// peer is reachable.
type planEnv struct {
	backend Backend
	hasPeer bool
	// forwards: the link only forwards (Target.Forwards), so its own
	// egress is a faithful place for drops.
	forwards bool
}

func effects() []effect {
	return []effect{rateEffect{}, delayEffect{}, lossEffect{}, outageEffect{}}
}

func buildPlan(imp Impairment, env planEnv) plan {
	p := plan{Egress: dirPlan{Dir: Egress}, Ingress: dirPlan{Dir: Ingress}}
	for _, d := range []Direction{Egress, Ingress} {
		if imp.Direction.Has(d) {
			p.dir(d).Targets = imp.Targets
		}
	}
	for _, e := range effects() {
		e.contribute(imp, env, &p)
	}
	return p
}

// netemParams is a netem leaf: delay, jitter and loss (netem backend).
type netemParams struct {
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Loss   float64       `json:"loss,omitempty"`
}

func (d *dirPlan) netem() *netemParams {
	if d.Netem == nil {
		d.Netem = &netemParams{}
	}
	return d.Netem
}
