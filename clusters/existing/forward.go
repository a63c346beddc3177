package existing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edgefault/edgefault/clusters"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/transport/spdy"
)

// Host reaches member's own ports (its node's loopback) through the API
// server's port-forward to the agent's pod on its node, which is on the
// node's host network: the management path, never the node's shaped
// link. It dials TCP only, and only the member itself.
func (f *Fleet) Host(name string) (clusters.Host, error) {
	m, err := f.find(name)
	if err != nil {
		return nil, err
	}
	return &forwardHost{f: f, m: m}, nil
}

type forwardHost struct {
	f *Fleet
	m *fleetMember

	once   sync.Once
	cs     kubernetes.Interface
	agents *Agents
	err    error
}

func (h *forwardHost) client() (kubernetes.Interface, *Agents, error) {
	h.once.Do(func() {
		if h.cs, h.err = h.f.Cluster.client(); h.err == nil {
			h.agents = NewAgents(h.cs, h.f.Token)
		}
	})
	return h.cs, h.agents, h.err
}

// DialContext opens a connection to addr's port on the member's node:
// addr is 127.0.0.1, localhost or the member's own address.
func (h *forwardHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("dial %s %s on %s: only TCP is forwarded through the API server: %w", network, addr, h.m.Name, clusters.ErrUnsupported)
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("dial %s on %s: port %q", addr, h.m.Name, p)
	}
	if host != "127.0.0.1" && host != "localhost" && host != h.m.Address {
		return nil, fmt.Errorf("dial %s from %s: through the API server the harness reaches only a member's own ports (127.0.0.1 or %s): %w", addr, h.m.Name, h.m.Address, clusters.ErrUnsupported)
	}
	cs, a, err := h.client()
	if err != nil {
		return nil, err
	}
	pod, err := a.pod(ctx, h.m.Node, false)
	if err != nil {
		return nil, err
	}
	c, err := forward(ctx, h.f, cs, pod, int(port))
	var refused *refusedError
	if err != nil && !errors.As(err, &refused) {
		// The agent's pod may have been replaced: once more, afresh.
		if pod, err2 := a.pod(ctx, h.m.Node, true); err2 == nil {
			c, err = forward(ctx, h.f, cs, pod, int(port))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s on %s (node %s) through the API server's port-forward: %w", addr, h.m.Name, h.m.Node, err)
	}
	return c, nil
}

func (h *forwardHost) Listen(network, addr string) (net.Listener, error) {
	return nil, unsupported("listening on " + h.m.Name)
}

func (h *forwardHost) ListenPacket(network, addr string) (net.PacketConn, error) {
	return nil, unsupported("listening on " + h.m.Name)
}

// portForwardProtocol is the kubelet's port-forward protocol over SPDY
// (client-go's portforward.PortForwardProtocolV1Name, without the
// package's websocket dependencies).
const portForwardProtocol = "portforward.k8s.io"

// forward opens one port-forward connection to port on pod (in
// Namespace) and its one data stream.
func forward(ctx context.Context, f *Fleet, cs kubernetes.Interface, pod string, port int) (net.Conn, error) {
	cfg, err := f.Cluster.config()
	if err != nil {
		return nil, err
	}
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(Namespace).Name(pod).SubResource("portforward").URL()
	// No client timeout: it would bound the forwarded connection too.
	d := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	type dialed struct {
		c   httpstream.Connection
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, _, err := d.Dial(portForwardProtocol)
		ch <- dialed{c, err}
	}()
	var conn httpstream.Connection
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		conn = r.c
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
	hdr := http.Header{}
	hdr.Set(corev1.StreamType, corev1.StreamTypeError)
	hdr.Set(corev1.PortHeader, strconv.Itoa(port))
	hdr.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(hdr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("the error stream: %w", err)
	}
	errStream.Close() // nothing to send on it
	hdr.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(hdr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("the data stream: %w", err)
	}
	fc := &forwardConn{conn: conn, data: data, port: port, errc: make(chan struct{})}
	go func() {
		// The kubelet writes here why the forward failed (nothing
		// listening, say), then ends the data stream.
		b, _ := io.ReadAll(io.LimitReader(errStream, 4096))
		fc.mu.Lock()
		if len(b) > 0 {
			fc.remote = errors.New(string(b))
		}
		fc.mu.Unlock()
		close(fc.errc)
	}()
	// The kubelet connects to the port as the streams open, and says at
	// once when nothing listens there: a dial that is refused fails here,
	// as a TCP dial would, rather than at the first read.
	select {
	case <-fc.errc:
		fc.mu.Lock()
		remote := fc.remote
		fc.mu.Unlock()
		if remote != nil {
			fc.Close()
			return nil, &refusedError{port: port, err: remote}
		}
	case <-time.After(dialSettle):
	case <-ctx.Done():
		fc.Close()
		return nil, ctx.Err()
	}
	return fc, nil
}

// refusedError is the kubelet's answer that it could not connect to the
// port (nothing listens there).
type refusedError struct {
	port int
	err  error
}

func (e *refusedError) Error() string { return fmt.Sprintf("port %d: %v", e.port, e.err) }
func (e *refusedError) Unwrap() error { return e.err }

// dialSettle is how long a dial waits for the kubelet to say that
// nothing listens on the port (it says so within milliseconds).
const dialSettle = 150 * time.Millisecond

// forwardConn is a port-forward's data stream as a net.Conn.
type forwardConn struct {
	conn httpstream.Connection
	data httpstream.Stream
	port int
	errc chan struct{}

	mu     sync.Mutex
	remote error
	closed sync.Once
}

func (c *forwardConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if n == 0 && err != nil {
		// An end at once may be the kubelet's error, arriving just after.
		select {
		case <-c.errc:
		case <-time.After(100 * time.Millisecond):
		}
		c.mu.Lock()
		remote := c.remote
		c.mu.Unlock()
		if remote != nil {
			return 0, fmt.Errorf("port %d: %w", c.port, remote)
		}
	}
	return n, err
}

func (c *forwardConn) Write(b []byte) (int, error) { return c.data.Write(b) }

func (c *forwardConn) Close() error {
	c.closed.Do(func() {
		c.data.Close()
		c.conn.Close()
	})
	return nil
}

type forwardAddr int

func (a forwardAddr) Network() string { return "portforward" }
func (a forwardAddr) String() string  { return "port-forward:" + strconv.Itoa(int(a)) }

func (c *forwardConn) LocalAddr() net.Addr  { return forwardAddr(0) }
func (c *forwardConn) RemoteAddr() net.Addr { return forwardAddr(c.port) }

// Deadlines are not kept by a stream: a caller that gives up closes the
// connection, which ends it.
func (c *forwardConn) SetDeadline(t time.Time) error      { return nil }
func (c *forwardConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *forwardConn) SetWriteDeadline(t time.Time) error { return nil }
