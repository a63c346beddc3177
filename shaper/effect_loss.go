package shaper

// lossEffect drops a share of packets at random: netem's loss where the
// kernel has netem, otherwise an nftables numgen rule at the far end of the
// link (nft.go).
type lossEffect struct{}

func (lossEffect) contribute(imp Impairment, env planEnv, p *plan) {
	if imp.Loss == 0 {
		return
	}
	for _, d := range []Direction{Egress, Ingress} {
		if !imp.Direction.Has(d) {
			continue
		}
		dp := p.dir(d)
		if env.backend == BackendNetem {
			dp.netem().Loss = imp.Loss
		} else {
			dp.DropPercent = imp.Loss
		}
	}
	if imp.Direction.Has(Egress) {
		p.CapGSO = true
	}
}
