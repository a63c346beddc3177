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

// hIngress is the ingress qdisc's handle.
var hIngress = netlink.MakeHandle(0xffff, 0)

// handles of one qdisc tree. A tree is built under major 1 or 2: a new
// tree of another shape is grafted under the other major in one step (the
// kernel will not change a qdisc's kind in place).
type handles struct{ root, shaped, free, leaf uint32 }

func treeHandles(major uint16) handles {
	return handles{
		root:   netlink.MakeHandle(major, 0),
		shaped: netlink.MakeHandle(major, 1), // tbf's class, or the htb class for targets
		free:   netlink.MakeHandle(major, 2), // htb class for everything else
		leaf:   netlink.MakeHandle(major+10, 0),
	}
}

// otherMajor alternates between the two tree majors.
func otherMajor(m uint16) uint16 {
	if m == 1 {
		return 2
	}
	return 1
}

// sameShape reports whether the tree for b can be had by changing the tree
// for a in place (same qdisc kinds in the same places), which keeps queued
// packets; otherwise a new tree is grafted.
func sameShape(a, b *dirPlan) bool {
	if a == nil || !a.needsTC() || len(a.Targets) > 0 || len(b.Targets) > 0 {
		return false
	}
	return (a.Rate != 0) == (b.Rate != 0) && (a.Netem != nil) == (b.Netem != nil)
}

// freeRate is the htb rate of traffic that is not targeted: effectively
// unlimited.
const freeRate = 100 * Gbit

// tbfSizes returns tbf's burst and queue limit in bytes for rate r. Measured
// on this project's machines: burst = max(4 KiB, 5 ms of rate)
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

// buildTree returns the tree for plan d on the device with index idx,
// under the given major.
func buildTree(idx int, d *dirPlan, major uint16) tcTree {
	var t tcTree
	h := treeHandles(major)
	rootAttrs := netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT, Handle: h.root}
	switch {
	case len(d.Targets) > 0:
		// htb: M:1 shaped (also the default until the filters exist), M:2
		// free; u32 filters send targets to M:1 and the rest to M:2. Until
		// the classes exist, htb would send packets straight through its
		// direct queue: a direct queue of 0 drops them instead, so the
		// moment of building over-impairs rather than lets traffic pass
		// unshaped.
		htb := netlink.NewHtb(rootAttrs)
		htb.Defcls = 1
		zero := uint32(0)
		htb.DirectQlen = &zero
		t.root = htb
		rate := d.Rate
		if rate == 0 {
			rate = freeRate
		}
		burst, limit := tbfSizes(rate)
		t.classes = append(t.classes,
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: h.root, Handle: h.shaped},
				netlink.HtbClassAttrs{Rate: uint64(rate), Ceil: uint64(rate), Buffer: burst, Cbuffer: burst}),
			netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: h.root, Handle: h.free},
				netlink.HtbClassAttrs{Rate: uint64(freeRate), Ceil: uint64(freeRate)}),
		)
		if d.Netem != nil {
			t.leaves = append(t.leaves, netemQdisc(idx, h.shaped, h.leaf, d.Netem, rate))
		} else {
			// A tbf leaf bounds the class's queue in bytes (50 ms of rate),
			// where htb's default pfifo would queue txqueuelen packets.
			t.leaves = append(t.leaves, &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: h.shaped, Handle: h.leaf},
				Rate: rate.BytesPerSecond(), Limit: limit, Buffer: netlink.Xmittime(rate.BytesPerSecond(), burst)})
		}
		for _, p := range d.Targets {
			t.filters = append(t.filters, u32Prefix(idx, h, p, d.Dir, 1))
		}
		t.filters = append(t.filters, &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: h.root, Priority: 2, Protocol: unix.ETH_P_ALL},
			ClassId:     h.free,
			Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
		})
	case d.Rate != 0:
		burst, limit := tbfSizes(d.Rate)
		t.root = &netlink.Tbf{QdiscAttrs: rootAttrs, Rate: d.Rate.BytesPerSecond(), Limit: limit,
			Buffer: netlink.Xmittime(d.Rate.BytesPerSecond(), burst)}
		if d.Netem != nil {
			t.leaves = append(t.leaves, netemQdisc(idx, h.shaped, h.leaf, d.Netem, d.Rate))
		}
	case d.Netem != nil:
		t.root = netemQdisc(idx, netlink.HANDLE_ROOT, h.root, d.Netem, 0)
	}
	return t
}

// u32Prefix sends IPv4 traffic whose remote end is in p to the shaped class.
func u32Prefix(idx int, h handles, p netip.Prefix, dir Direction, prio uint16) *netlink.U32 {
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
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: h.root, Priority: prio, Protocol: unix.ETH_P_IP},
		ClassId:     h.shaped,
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

// installTree puts t on the device: the root qdisc is changed in place
// (same kind, same handle) or a new one is grafted over the old in one step.
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
	// Handle 0: whichever major the tree is under.
	err := c.nl.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_ROOT}})
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
