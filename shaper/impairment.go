package shaper

import (
	"net/netip"

	"github.com/edgefault/edgefault/shaper/impair"
)

// The impairment model lives in package impair, which has no kernel
// dependency; these aliases keep it reachable as shaper.Impairment etc.

// Direction says which traffic of a link an impairment acts on; see
// impair.Direction.
type Direction = impair.Direction

// Directions.
const (
	Egress  = impair.Egress
	Ingress = impair.Ingress
	Both    = impair.Both
)

// Impairment describes what to do to one link; see impair.Impairment.
type Impairment = impair.Impairment

// ParseDirection parses "egress", "ingress" or "both"; see
// impair.ParseDirection.
func ParseDirection(s string) (Direction, error) { return impair.ParseDirection(s) }

// ParseTargets parses comma-separated or repeated CIDRs; see
// impair.ParseTargets.
func ParseTargets(ss []string) ([]netip.Prefix, error) { return impair.ParseTargets(ss) }
