package harness

import (
	"context"
	"fmt"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// readdress gives the members' uplinks new addresses, one after another,
// as evidence on each gateway's timeline.
func (r *run) readdress(ctx context.Context, a action, ms []scenarios.Member) error {
	ra, ok := r.f.(clusters.Readdresser)
	if !ok {
		return fmt.Errorf("provider %s cannot give an uplink a new address", r.f.Provider())
	}
	r.logStep(a.step, "new uplink address")
	for _, m := range ms {
		old, nu, err := ra.ChangeAddress(ctx, m.Name)
		if err != nil {
			return err
		}
		r.ev.emit(m.Name, "timeline", "address-changed", "from", old, "to", nu, "note", a.step.Note)
		if err := r.dnsFollows(m.Name); err != nil {
			return err
		}
	}
	return nil
}
