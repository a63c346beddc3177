package shaper

// delayEffect adds latency and jitter: a netem leaf where the kernel has
// netem, otherwise the NFQUEUE delayer (delayer.go), which holds packets in
// a FIFO and never reorders them, its jitter drawn from the impairment's
// seed when it has one.
type delayEffect struct{}

func (delayEffect) contribute(imp Impairment, env planEnv, p *plan) {
	if imp.Delay == 0 && imp.Jitter == 0 {
		return
	}
	for _, d := range []Direction{Egress, Ingress} {
		if !imp.Direction.Has(d) {
			continue
		}
		dp := p.dir(d)
		if env.backend == BackendNetem {
			n := dp.netem()
			n.Delay, n.Jitter = imp.Delay, imp.Jitter
			continue
		}
		dp.Delay, dp.Jitter = imp.Delay, imp.Jitter
		if imp.Jitter != 0 {
			dp.Seed = dirSeed(imp.Seed, d)
		}
	}
}
