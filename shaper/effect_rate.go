package shaper

// rateEffect caps throughput with tbf (all traffic) or htb (per-destination
// targets), each direction at its own rate (up is egress, down ingress);
// tc.go sizes burst and limit so the achieved rate matches.
type rateEffect struct{}

func (rateEffect) contribute(imp Impairment, env planEnv, p *plan) {
	for _, d := range []Direction{Egress, Ingress} {
		if r := imp.RateOf(d); r != 0 {
			p.dir(d).Rate = r
			if d == Egress && len(imp.Targets) > 0 {
				p.CapGSO = true
			}
		}
	}
}
