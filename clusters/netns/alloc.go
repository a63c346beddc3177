package netns

import (
	"fmt"
	"net/netip"
)

// Address plan. The WAN is carrier-grade NAT space, as a cellular uplink
// would be; site LANs are carved out of 10.0.0.0/8, each at least a /24 and
// larger when the site needs it.
var (
	wanPrefix   = netip.MustParsePrefix("100.64.0.0/10")
	cloudAddr   = netip.MustParseAddr("100.64.0.1")
	lanSupernet = netip.MustParsePrefix("10.0.0.0/8")
)

// lanAllocator hands out aligned site LAN blocks.
type lanAllocator struct{ next uint32 }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// block returns a LAN for hosts addresses (plus network and broadcast).
func (a *lanAllocator) block(hosts int) (netip.Prefix, error) {
	bits := 24
	for bits > 8 && (1<<(32-bits))-2 < hosts {
		bits--
	}
	size := uint32(1) << (32 - bits)
	base := u32(lanSupernet.Addr())
	if a.next == 0 {
		a.next = base + 256 // skip 10.0.0.0/24
	}
	start := (a.next + size - 1) / size * size
	if start+size > base+(1<<24) {
		return netip.Prefix{}, fmt.Errorf("site LANs need more than 10.0.0.0/8")
	}
	a.next = start + size
	return netip.PrefixFrom(addr(start), bits), nil
}

// nth returns the n-th host address of p (1-based).
func nth(p netip.Prefix, n int) netip.Addr { return addr(u32(p.Addr()) + uint32(n)) }
