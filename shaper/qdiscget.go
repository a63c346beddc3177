package shaper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// qdiscKind asks the kernel for the qdisc at parent (netlink.HANDLE_ROOT or
// HANDLE_INGRESS) of device idx with a single RTM_GETQDISC request: unlike
// a dump, its cost does not grow with the number of devices in the
// namespace (a fleet's fabric has one per member). It returns "" when
// there is none.
func qdiscKind(c *nsConn, idx int, parent uint32) (string, error) {
	k, _, err := qdiscInfo(c, idx, parent)
	return k, err
}

// qdiscInfo is qdiscKind with the qdisc's handle.
func qdiscInfo(c *nsConn, idx int, parent uint32) (string, uint32, error) {
	conn := c.rt
	// Never hang on a kernel that answers differently.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// struct tcmsg { u8 family, pad1; u16 pad2; s32 ifindex; u32 handle, parent, info; }
	tcm := make([]byte, 20)
	binary.NativeEndian.PutUint32(tcm[4:], uint32(idx))
	binary.NativeEndian.PutUint32(tcm[12:], parent)
	req, err := conn.Send(mnl.Message{
		Header: mnl.Header{Type: unix.RTM_GETQDISC, Flags: mnl.Request | mnl.Acknowledge | mnl.Echo},
		Data:   tcm,
	})
	if err != nil {
		return "", 0, fmt.Errorf("get qdisc: %w", err)
	}
	// The answer (if any) and the ack come as separate datagrams: read up
	// to and including the ack, so nothing is left for the next request.
	var msgs []mnl.Message
	for done := false; !done; {
		got, err := conn.Receive()
		if err != nil {
			var oe *mnl.OpError
			if errors.As(err, &oe) && (errors.Is(oe.Err, unix.ENOENT) || errors.Is(oe.Err, unix.EINVAL)) {
				return "", 0, nil
			}
			return "", 0, fmt.Errorf("get qdisc: %w", err)
		}
		for _, m := range got {
			if m.Header.Sequence != req.Header.Sequence {
				continue
			}
			if m.Header.Type == mnl.Error {
				done = true
				continue
			}
			msgs = append(msgs, m)
		}
	}
	// The kernel answers a qdisc GET as a notification, sent back to us only
	// with NLM_F_ECHO; a built-in qdisc (noqueue) is not reported at all:
	// only the ack comes back.
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWQDISC || len(m.Data) < 20 {
			continue
		}
		ad, err := mnl.NewAttributeDecoder(m.Data[20:])
		if err != nil {
			return "", 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.TCA_KIND {
				return ad.String(), binary.NativeEndian.Uint32(m.Data[8:12]), nil
			}
		}
	}
	return "", 0, nil
}
