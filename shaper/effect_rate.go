package shaper

// rateEffect caps throughput with tbf (all traffic) or htb (per-destination
// targets); tc.go sizes burst and limit so the achieved rate matches.
type rateEffect struct{}

func (rateEffect) contribute(imp Impairment, env planEnv, p *plan) {
	if imp.Rate == 0 {
		return
	}
	for _, d := range []Direction{Egress, Ingress} {
		if imp.Direction.Has(d) {
			p.dir(d).Rate = imp.Rate
		}
	}
	if len(imp.Targets) > 0 && imp.Direction.Has(Egress) {
		p.CapGSO = true
	}
}
