package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/edgefault/edgefault/clusters"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// readdressBase is where new uplink addresses come from: the upper half of
// the WAN, which plan never hands out (it counts up from the cloud's).
var readdressBase = netip.MustParseAddr("100.96.0.0")

// ChangeAddress gives gateway member's uplink a new address, as a cellular
// or CGNAT uplink gets one when it reconnects: the gateway's masquerade
// forgets the connections it had translated to the old one, so the
// connections its nodes had open break (their next segment reaches the
// cloud from an address it does not know, which resets it) rather than
// stall. It returns the old and the new address.
func (f *Fleet) ChangeAddress(ctx context.Context, member string) (old, new string, err error) {
	f.addrMu.Lock()
	defer f.addrMu.Unlock()
	m, err := f.find(member)
	if err != nil {
		return "", "", err
	}
	if m.Role != clusters.RoleGateway {
		return "", "", fmt.Errorf("%s is a %s: only a gateway's uplink gets a new address", member, m.Role)
	}
	idx := -1
	for i := range f.All {
		if f.All[i].Name == member {
			idx = i
		}
	}
	f.Readdressed++
	next := u32(readdressBase) + uint32(idx)<<8 + uint32(f.Readdressed%256)
	na := addr(next)
	if !wanPrefix.Contains(na) {
		return "", "", fmt.Errorf("no new address for %s in the WAN %v", member, wanPrefix)
	}
	old, new = m.WANAddress, na.String()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netns.GetFromName(m.Namespace)
	if err != nil {
		return "", "", fmt.Errorf("%s's namespace: %w", member, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return "", "", err
	}
	defer nl.Close()
	wan, err := nl.LinkByName("wan0")
	if err != nil {
		return "", "", fmt.Errorf("%s's uplink: %w", member, err)
	}
	oa, err := netlink.ParseAddr(old + "/" + fmt.Sprint(wanPrefix.Bits()))
	if err != nil {
		return "", "", err
	}
	nad, err := netlink.ParseAddr(new + "/" + fmt.Sprint(wanPrefix.Bits()))
	if err != nil {
		return "", "", err
	}
	// The old address goes first, as on a modem that reconnects: the
	// masquerade drops what it had translated to it, and the routes through
	// the uplink go with the last address; the new one and the default
	// route come back after.
	if err := nl.AddrDel(wan, oa); err != nil {
		return "", "", fmt.Errorf("remove %s's address %s: %w", member, old, err)
	}
	route := &netlink.Route{LinkIndex: wan.Attrs().Index, Gw: net.ParseIP(m.Via)}
	if err := nl.AddrAdd(wan, nad); err != nil {
		// Back as it was, so the fleet's state stays true.
		_ = nl.AddrAdd(wan, oa)
		_ = nl.RouteReplace(route)
		return "", "", fmt.Errorf("give %s the address %s: %w", member, new, err)
	}
	if err := nl.RouteReplace(route); err != nil {
		return "", "", fmt.Errorf("%s's default route via %s: %w", member, m.Via, err)
	}
	m.WANAddress = new
	if err := f.save(); err != nil {
		return old, new, err
	}
	return old, new, nil
}

var _ clusters.Readdresser = (*Fleet)(nil)
