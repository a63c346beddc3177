package shaper

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/edgefault/edgefault/internal/nsdo"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrLinkGone is returned (wrapped) for a link that is not there.
var ErrLinkGone = errors.New("no interface")

// Link names one end of a network link: an interface in a network
// namespace.
type Link struct {
	// Netns is a named namespace as `ip netns` lists it ("edgefault-store1"),
	// a path to a namespace file ("/proc/1234/ns/net", "/run/netns/x"), or ""
	// for the namespace of the calling process.
	Netns string `json:"netns,omitempty"`
	// Name is the interface name inside that namespace.
	Name string `json:"name"`
}

func (l Link) String() string {
	if l.Netns == "" {
		return l.Name
	}
	return l.Netns + "/" + l.Name
}

// NetnsPath resolves Netns to a path ("" for the caller's namespace).
func (l Link) NetnsPath() string { return nsdo.Path(l.Netns) }

// Target is a link to impair and, where it is reachable, its peer: the
// other end of the cable (the host side of a veth, a bridge port in the
// fleet's fabric). With a peer, the link's egress is impaired at the peer's
// ingress and its ingress at the peer's egress, so the node's own TCP sees
// loss and queueing as happening on the wire, not as local congestion it
// would silently retry; an outage takes the peer down, which keeps the
// node's routes and its TCP connections alive.
//
// Forwards says Link carries no traffic of its own namespace's sockets:
// it is the host side of a pod's veth, say, and the pod is the target,
// seen from the far end. Drops and delay on its egress then land on
// forwarded packets, which no local TCP counts as local failure, so they
// are made there as with a peer.
type Target struct {
	Link     Link  `json:"link"`
	Peer     *Link `json:"peer,omitempty"`
	Forwards bool  `json:"forwards,omitempty"`
}

func (t Target) String() string {
	if t.Peer == nil {
		return t.Link.String()
	}
	return t.Link.String() + " (peer " + t.Peer.String() + ")"
}

// nsConn is an open namespace with a netlink handle bound to it.
type nsConn struct {
	path string
	ns   netns.NsHandle
	nl   *netlink.Handle
	id   string    // device:inode, stable for the namespace's life
	rt   *mnl.Conn // raw rtnetlink for requests the handle lacks
}

func openNS(l Link) (*nsConn, error) {
	p := l.NetnsPath()
	var (
		h   netns.NsHandle
		err error
	)
	if p == "" {
		h, err = netns.Get()
	} else {
		h, err = netns.GetFromPath(p)
	}
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("network namespace %q does not exist (see `ip netns list`)", l.Netns)
		}
		if os.IsPermission(err) {
			return nil, fmt.Errorf("open network namespace %q: %w (edgefault needs root or CAP_SYS_ADMIN)", l.Netns, err)
		}
		return nil, fmt.Errorf("open network namespace %q: %w", l.Netns, err)
	}
	// Open both rtnetlink sockets inside the namespace in one visit: each
	// visit is a thread switch, and a socket stays where it was made.
	var (
		nl *netlink.Handle
		rt *mnl.Conn
	)
	err = inNetns(p, func() error {
		var err error
		if nl, err = netlink.NewHandle(syscall.NETLINK_ROUTE); err != nil {
			return err
		}
		if rt, err = mnl.Dial(syscall.NETLINK_ROUTE, nil); err != nil {
			nl.Close()
		}
		return err
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink in namespace %q: %w", l.Netns, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h), &st); err != nil {
		nl.Close()
		rt.Close()
		h.Close()
		return nil, err
	}
	return &nsConn{path: p, ns: h, nl: nl, rt: rt, id: fmt.Sprintf("%d:%d", st.Dev, st.Ino)}, nil
}

// nsID identifies the namespace at path ("" = this thread's) as
// device:inode.
func nsID(path string) (string, error) {
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

func (c *nsConn) Close() {
	if c.rt != nil {
		c.rt.Close()
	}
	c.nl.Close()
	c.ns.Close()
}

func (c *nsConn) link(name string) (netlink.Link, error) {
	l, err := c.nl.LinkByName(name)
	if err != nil {
		if _, ok := err.(netlink.LinkNotFoundError); ok {
			where := c.path
			if where == "" {
				where = "this namespace"
			}
			return nil, fmt.Errorf("%w: %q in %s", ErrLinkGone, name, where)
		}
		return nil, fmt.Errorf("look up interface %q: %w", name, err)
	}
	return l, nil
}
