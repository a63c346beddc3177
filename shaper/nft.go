package shaper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// tableName is the name of edgefault's nft table for one device.
func tableName(dev string) string { return "edgefault-" + dev }

// nftChain is one base chain of an edgefault table.
type nftChain struct {
	name   string
	hook   *nftables.ChainHook
	device string // netdev family only
	rules  [][]expr.Any
}

// nft is an nftables connection in the namespace. In the caller's own it
// is made there directly: entering a namespace, even one's own, takes
// CAP_SYS_ADMIN, which the node agent does not have.
func (c *nsConn) nft() (*nftables.Conn, error) {
	if c.path == "" {
		return nftables.New()
	}
	return nftables.New(nftables.WithNetNSFd(int(c.ns)))
}

// replaceTable replaces table name of family fam in the namespace with one
// holding chains, in a single netlink transaction: the old rules hold until
// the new ones take over, so there is no moment without either. With no
// chains the table is removed.
func replaceTable(c *nsConn, fam nftables.TableFamily, name string, chains []nftChain) error {
	conn, err := c.nft()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer conn.CloseLasting()
	t := &nftables.Table{Family: fam, Name: name}
	// Add (a no-op when present) then delete, so the delete cannot fail.
	conn.AddTable(t)
	conn.DelTable(t)
	if len(chains) > 0 {
		conn.AddTable(t)
		for _, ch := range chains {
			pol := nftables.ChainPolicyAccept
			c := conn.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: ch.hook, Priority: nftables.ChainPriorityRef(-150), Device: ch.device, Policy: &pol})
			for _, r := range ch.rules {
				conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: r})
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nft table %s: %w", name, err)
	}
	return nil
}

// deleteTable removes a table if it exists.
func deleteTable(c *nsConn, fam nftables.TableFamily, name string) error {
	err := replaceTable(c, fam, name, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func ifnameBytes(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func matchIfname(in bool, dev string) []expr.Any {
	key := expr.MetaKeyOIFNAME
	if in {
		key = expr.MetaKeyIIFNAME
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(dev)},
	}
}

// matchEtherSaddr matches frames sent by the interface with this MAC: the
// traffic a link sends, seen at its peer (a bridge port passes it to the
// inet hooks through br_netfilter with the bridge as input device).
func matchEtherSaddr(mac net.HardwareAddr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(mac)},
	}
}

// matchIPv4 matches IPv4 packets (netdev chains see every protocol).
func matchIPv4(fam nftables.TableFamily) []expr.Any {
	if fam == nftables.TableFamilyNetdev {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)},
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// matchPrefix matches the remote end of the traffic: the destination of
// what the link sends, the source of what it receives.
func matchPrefix(p netip.Prefix, dir Direction) []expr.Any {
	off := uint32(16) // daddr
	if dir == Ingress {
		off = 12 // saddr
	}
	mask := net.CIDRMask(p.Bits(), 32)
	a := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

// withTargets returns one rule per target (or one for all traffic), each
// the prefix match followed by body.
func withTargets(prefix []expr.Any, targets []netip.Prefix, dir Direction, fam nftables.TableFamily, body []expr.Any) [][]expr.Any {
	if len(targets) == 0 {
		return [][]expr.Any{append(append([]expr.Any{}, prefix...), body...)}
	}
	var out [][]expr.Any
	for _, t := range targets {
		r := append([]expr.Any{}, prefix...)
		r = append(r, matchIPv4(fam)...)
		r = append(r, matchPrefix(t, dir)...)
		out = append(out, append(r, body...))
	}
	return out
}

// dropRules drops percent% of the packets that match prefix (and a
// target) at random, all of them at 100, counting what it matched; one
// rule per target.
func dropRules(percent float64, targets []netip.Prefix, dir Direction, fam nftables.TableFamily, prefix []expr.Any) [][]expr.Any {
	body := []expr.Any{}
	if percent < 100 {
		// numgen random mod 10000 < percent*100, compared in network order
		// as nft itself does (cmp lt works on big-endian bytes).
		body = append(body,
			&expr.Numgen{Register: 1, Modulus: 10000, Type: unix.NFT_NG_RANDOM},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(percent*100 + 0.5))},
		)
	}
	body = append(body, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	return withTargets(prefix, targets, dir, fam, body)
}

// queueExpr sends the packet to NFQUEUE queue num through the xtables
// NFQUEUE target (nft_compat): kernels without the nft queue expression
// still have it. Without a listener the packet is dropped, not passed
// unshaped.
func queueExpr(num uint16) expr.Any {
	// struct xt_NFQ_info_v3 { __u16 queuenum, queues_total, flags; }
	info := make([]byte, 6)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	u := xt.Unknown(info)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &u}
}
