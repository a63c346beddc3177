package shaper

// lossEffect drops a share of packets at random: netem's loss where the
// kernel has netem, otherwise an nftables numgen rule at the far end of the
// link (nft.go), or, when the impairment is seeded, the delayer drawing
// from the seed (nft's random numbers cannot be replayed). netem's draws
// are the kernel's: there a seed is not honoured.
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
		switch {
		case env.backend == BackendNetem:
			dp.netem().Loss = imp.Loss // the kernel's draws: a seed is not honoured
		case imp.Seed != 0:
			dp.QueueLoss, dp.Seed = imp.Loss, dirSeed(imp.Seed, d)
		default:
			dp.DropPercent = imp.Loss
		}
	}
	if imp.Direction.Has(Egress) {
		p.CapGSO = true
	}
}
