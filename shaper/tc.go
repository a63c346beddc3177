package shaper

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Handles used by edgefault's qdisc trees.
var (
	hRoot    = netlink.MakeHandle(1, 0)
	hShaped  = netlink.MakeHandle(1, 1) // tbf's class, or the htb class for targets
	hFree    = netlink.MakeHandle(1, 2) // htb class for everything else
	hLeaf    = netlink.MakeHandle(10, 0)
	hIngress = netlink.MakeHandle(0xffff, 0)
)

// freeRate is the htb rate of traffic that is not targeted: effectively
// unlimited.
const freeRate = 100 * Gbit

// tbfSizes returns tbf's burst and queue limit in bytes for rate r. Measured
// on this project's machines (FACTS.md): burst = max(4 KiB, 5 ms of rate)
// and limit = 50 ms of rate + burst give 0.957-0.961 of the configured rate
// as TCP goodput (1448/1514 is the payload share of a frame) and 1.000 at
// the link layer; a tight 1600 B burst gives only 0.35-0.73 with BBR.
func tbfSizes(r Rate) (burst, limit uint32) {
	bps := float64(r.BytesPerSecond())
	b := bps * 0.005
	if b < 4096 {
		b = 4096
	}
	l := bps*0.050 + b
	return uint32(b), uint32(l)
}

// tcTree is the qdiscs, classes and filters for one shaping device, in
// the order they must be installed.
type tcTree struct {
	root    netlink.Qdisc
	classes []netlink.Class
	leaves  []netlink.Qdisc
	filters []netlink.Filter // installed last, so targeted traffic is over- not under-shaped while building
}

// buildTree returns the tree for plan d on the device with index idx.
func buildTree(idx int, d *dirPlan) tcTree {
	var t tcTree
	rootAttrs := netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: hRoot}
	switch {
	case len(d.Targets) > 0:
		// htb: 1:1 shaped (also the default until the filters exist), 1:2
		// free; u32 filters send targets to 1:1 and the rest to 1:2.
		htb := netlink.NewHtb(rootAttrs)
		htb.Defcls = 1
		t.root = htb
		rate := d.Rate
		if rate == 0 {
			rate = freeRate
		}
		burst, limit := tbfSizes(rate)
		t.classes = append(t.classes,
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: hRoot, Handle: hShaped},
				netlink.HtbClassAttrs{Rate: uint64(rate), Ceil: uint64(rate), Buffer: burst, Cbuffer: burst}),
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: hRoot, Handle: hFree},
				netlink.HtbClassAttrs{Rate: uint64(freeRate), Ceil: uint64(freeRate)}),
		)
		if d.Netem != nil {
			t.leaves = append(t.leaves, netemQdisc(idx, hShaped, hLeaf, d.Netem, rate))
		} else {
			// A tbf leaf bounds the class's queue in bytes (50 ms of rate),
			// where htb's default pfifo would queue txqueuelen packets.
			t.leaves = append(t.leaves, &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: hShaped, Handle: hLeaf},
				Rate: rate.BytesPerSecond(), Limit: limit, Buffer: netlink.Xmittime(rate.BytesPerSecond(), burst)})
		}
		for _, p := range d.Targets {
			t.filters = append(t.filters, u32Prefix(idx, p, d.Dir, 1))
		}
		t.filters = append(t.filters, &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: hRoot, Priority: 2, Protocol: unix.ETH_P_ALL},
			ClassId:     hFree,
			Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
		})
	case d.Rate != 0:
		burst, limit := tbfSizes(d.Rate)
		t.root = &netlink.Tbf{QdiscAttrs: rootAttrs, Rate: d.Rate.BytesPerSecond(), Limit: limit,
			Buffer: netlink.Xmittime(d.Rate.BytesPerSecond(), burst)}
		if d.Netem != nil {
			t.leaves = append(t.leaves, netemQdisc(idx, hShaped, hLeaf, d.Netem, d.Rate))
		}
	case d.Netem != nil:
		t.root = netemQdisc(idx, netlink.HANDLE_ROOT, hRoot, d.Netem, 0)
	}
	return t
}

// u32Prefix sends IPv4 traffic whose remote end is in p to the shaped class.
func u32Prefix(idx int, p netip.Prefix, dir Direction, prio uint16) *netlink.U32 {
	off := int32(16) // destination address
	if dir == Ingress {
		off = 12 // source address
	}
	a := p.Addr().As4()
	val := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	mask := uint32(0)
	if p.Bits() > 0 {
		mask = ^uint32(0) << (32 - p.Bits())
	}
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: hRoot, Priority: prio, Protocol: unix.ETH_P_IP},
		ClassId:     hShaped,
		Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL,
			Keys: []netlink.TcU32Key{{Mask: mask, Val: val & mask, Off: off}}},
	}
}

// redirectFilter sends everything arriving on from to the ifb device to.
func redirectFilter(from, to int) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from, Parent: hIngress, Priority: 1, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR, Ifindex: to,
		}},
	}
}

// installTree puts t on the device, replacing the root qdisc in one step.
func installTree(c *nsConn, t tcTree) error {
	if err := c.nl.QdiscReplace(t.root); err != nil {
		return fmt.Errorf("replace root qdisc %s: %w", t.root.Type(), err)
	}
	for _, cl := range t.classes {
		if err := c.nl.ClassReplace(cl); err != nil {
			return fmt.Errorf("htb class: %w", err)
		}
	}
	for _, q := range t.leaves {
		if err := c.nl.QdiscReplace(q); err != nil {
			return fmt.Errorf("leaf qdisc %s: %w", q.Type(), err)
		}
	}
	for _, f := range t.filters {
		// The root qdisc is new, so its filters are too: add, not replace.
		if err := c.nl.FilterAdd(f); err != nil {
			return fmt.Errorf("u32 filter: %w", err)
		}
	}
	return nil
}

// removeRoot deletes the root qdisc of device idx, returning it to the
// kernel's default.
func removeRoot(c *nsConn, idx int) error {
	err := c.nl.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: hRoot}})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove root qdisc: %w", err)
	}
	return nil
}

// rootKind returns the type of the root qdisc of device idx ("noqueue" for
// the veth default).
func rootKind(c *nsConn, idx int) (string, error) {
	k, err := qdiscKind(c, idx, netlink.HANDLE_ROOT)
	if k == "" && err == nil {
		k = "noqueue"
	}
	return k, err
}

// hasIngressQdisc reports whether device idx has an ingress qdisc.
func hasIngressQdisc(c *nsConn, idx int) (bool, error) {
	k, err := qdiscKind(c, idx, netlink.HANDLE_INGRESS)
	return k != "", err
}

// ifbName is the ifb device that carries the ingress of device dev in the
// namespace with id nsID. Names are at most 15 bytes.
func ifbName(nsID, dev string) string {
	h := sha256.Sum256([]byte(nsID + "/" + dev))
	return "efb" + hex.EncodeToString(h[:5])
}

// netemQdisc builds the netem leaf. Its queue is long enough for a
// minute of the given rate (or 10000 packets), so netem never tail-drops
// on its own: loss is what the impairment says.
func netemQdisc(idx int, parent, handle uint32, n *netemParams, r Rate) *netlink.Netem {
	limit := uint32(10000)
	if r != 0 {
		// packets of 1500 bytes in flight over the delay, doubled
		inflight := float64(r.BytesPerSecond()) * (n.Delay + n.Jitter + 50*time.Millisecond).Seconds() / 1500 * 2
		if uint32(inflight) > limit {
			limit = uint32(inflight)
		}
	}
	return netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: idx, Parent: parent, Handle: handle},
		netlink.NetemQdiscAttrs{
			Latency: uint32(n.Delay / time.Microsecond),
			Jitter:  uint32(n.Jitter / time.Microsecond),
			Loss:    float32(n.Loss),
			Limit:   limit,
		})
}
