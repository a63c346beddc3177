package shaper

// outageEffect cuts the link. A whole-link cut takes the peer's interface
// down ("pulling the cable at the switch"): both ends keep their addresses
// and routes, their TCP connections stall and recover on restore. A cut of
// one direction or of some destinations drops at the far end with
// nftables. It is never made of drops on the node's own egress: the node's
// TCP would count them as local failures and abort after about 8 s
// (a link that only forwards, Target.Forwards, has no such TCP).
type outageEffect struct{}

func (outageEffect) contribute(imp Impairment, env planEnv, p *plan) {
	if !imp.Outage {
		return
	}
	if env.hasPeer && imp.Direction == Both && len(imp.Targets) == 0 {
		p.PeerDown = true
		return
	}
	for _, d := range []Direction{Egress, Ingress} {
		// Without a peer the only place for an egress cut is the node's own
		// egress; Apply refuses an egress-only outage there, and a
		// both-ways outage drops what arrives, which stalls any
		// conversation without a local error.
		if d == Egress && !env.hasPeer && !env.forwards {
			continue
		}
		if !imp.Direction.Has(d) {
			continue
		}
		dp := p.dir(d)
		dp.DropPercent = 100
		if d == Ingress && !env.hasPeer {
			// What arrives is cut at the link's own ingress hook, which a
			// packet that an ingress rate limiter (an ifb) hands back
			// skips: the rate, delay and loss of the cut traffic go, as
			// nothing of it passes anyway (the same targets).
			dp.Rate, dp.Netem, dp.Delay, dp.Jitter, dp.QueueLoss = 0, nil, 0, 0, 0
		}
	}
}
