package shaper

// Report is what `edgefault doctor` prints: the probe and what each
// backend does with it.
type Report struct {
	Capabilities Capabilities    `json:"capabilities"`
	Backend      Backend         `json:"backend"`
	Backends     []BackendReport `json:"backends"`
}

// BackendReport says whether a backend runs here and how accurate it is.
type BackendReport struct {
	Name  Backend  `json:"name"`
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes"`
}

// Diagnose turns a probe into a report. The accuracy notes are measured
// figures (docs/shaping.md; `make bench` re-measures them).
func Diagnose(c Capabilities) Report {
	r := Report{Capabilities: c}
	for _, b := range []Backend{BackendNetem, BackendFallback} {
		br := BackendReport{Name: b}
		if err := c.Check(b); err != nil {
			br.Error = err.Error()
		} else if r.Backend == "" {
			r.Backend = b
		}
		switch b {
		case BackendNetem:
			br.Notes = []string{
				"rate: tbf (or htb per destination) with netem as its leaf; delay, jitter and loss by netem, in both directions at the far end of the link",
				"jitter: netem's uniform distribution; netem may reorder packets when jitter exceeds the gap between them",
			}
		case BackendFallback:
			br.Notes = []string{
				"rate: tbf (htb + u32 per destination), the link's egress on an ifb at its peer's ingress; measured 0.956 goodput/configured",
				"loss: nftables numgen random drop at the far end of the link (the peer's prerouting hook for egress, its netdev egress hook for ingress)",
				"delay/jitter, ingress: NFQUEUE delayer on the link's own prerouting hook (receive side): accurate",
				"delay/jitter, egress with a peer: NFQUEUE delayer at the peer's prerouting hook (bridged frames via br_netfilter, matched by source MAC): accurate",
				"delay/jitter, egress without a peer: postrouting on the link itself: accurate for forwarded traffic, but the node's own TCP is throttled by TCP small queues while packets are held (use a peer)",
				"jitter: a bounded random walk over [delay-jitter, delay+jitter] (uniform in the long run, mean = delay) that moves between packets by at most their spacing: never reorders",
				"outage: the peer's interface taken down (both ends keep routes and TCP connections); one direction or some destinations: nft drops at the far end",
			}
			if !c.Has(FeatBridgeFilter) {
				br.Notes = append(br.Notes, "br_netfilter is not available: egress delay at a bridge port cannot be applied")
			}
		}
		r.Backends = append(r.Backends, br)
	}
	return r
}
