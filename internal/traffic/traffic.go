// Package traffic provides real traffic between network namespaces for
// tests and benchmarks: TCP bulk transfers, UDP packet trains and UDP echo
// round trips, each bounded in bytes and time. Traffic only ever goes to
// addresses inside namespaces the caller created.
package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgefault/edgefault/internal/nsdo"
)

// In runs fn inside the named namespace (a name under /run/netns or a
// path). Sockets created in fn stay in that namespace.
func In(nsName string, fn func() error) error { return nsdo.Do(nsName, fn) }

// Host is one end of the traffic: a network namespace (NS), or a fleet
// member's network as clusters.Host gives it.
type Host interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Listen(network, addr string) (net.Listener, error)
	ListenPacket(network, addr string) (net.PacketConn, error)
}

// NS is the named network namespace as a Host.
type NS string

// DialContext connects from inside the namespace.
func (n NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsdo.DialContext(string(n))(ctx, network, addr)
}

// Listen listens inside the namespace.
func (n NS) Listen(network, addr string) (net.Listener, error) {
	return Listen(string(n), network, addr)
}

// ListenPacket opens a packet socket inside the namespace.
func (n NS) ListenPacket(network, addr string) (c net.PacketConn, err error) {
	err = In(string(n), func() error { c, err = net.ListenPacket(network, addr); return err })
	return c, err
}

// Listen opens a listener in namespace ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := In(ns, func() (err error) { l, err = net.Listen(network, addr); return })
	return l, err
}

// Knock serves a TCP endpoint in namespace ns that accepts and at once
// closes every connection: something to probe. Close the listener to stop.
func Knock(ns, addr string) (net.Listener, error) {
	ln, err := Listen(ns, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

// ListenPacket opens a packet socket in namespace ns.
func ListenPacket(ns, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := In(ns, func() (err error) { c, err = net.ListenPacket("udp4", addr); return })
	return c, err
}

// Dial connects from namespace ns.
func Dial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	return nsdo.DialContext(ns)(ctx, network, addr)
}

// Transfer is the result of a bulk TCP transfer.
type Transfer struct {
	Bytes    int64
	Duration time.Duration
}

// Goodput in bits per second.
func (t Transfer) Goodput() float64 {
	if t.Duration <= 0 {
		return 0
	}
	return float64(t.Bytes) * 8 / t.Duration.Seconds()
}

// TCPThroughput sends from namespace from to a sink listening at addr in
// namespace to for d (after warmup) and returns what the receiver counted.
func TCPThroughput(ctx context.Context, from, to, addr string, warmup, d time.Duration) (Transfer, error) {
	return TCPThroughputWindow(ctx, from, to, addr, warmup, d, nil)
}

// TCPThroughputWindow is TCPThroughput calling window(true) when the
// measured window opens and window(false) when it closes, so a caller can
// read link counters over exactly the same span.
func TCPThroughputWindow(ctx context.Context, from, to, addr string, warmup, d time.Duration, window func(open bool)) (Transfer, error) {
	return throughput(ctx, NS(from), NS(to), addr, warmup, d, window)
}

// Throughput is TCPThroughput between two Hosts.
func Throughput(ctx context.Context, from, to Host, addr string, warmup, d time.Duration) (Transfer, error) {
	return throughput(ctx, from, to, addr, warmup, d, nil)
}

func throughput(ctx context.Context, from, to Host, addr string, warmup, d time.Duration, window func(open bool)) (Transfer, error) {
	if window == nil {
		window = func(bool) {}
	}
	l, err := to.Listen("tcp4", addr)
	if err != nil {
		return Transfer{}, err
	}
	defer l.Close()
	type res struct {
		tr  Transfer
		err error
	}
	resc := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			resc <- res{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		start := time.Now()
		var n int64
		measuring := false
		var mstart time.Time
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := c.Read(buf)
			now := time.Now()
			// The window opens on a read that emptied the receive queue
			// (it returned less than the buffer), so bytes that queued up
			// while a loaded machine kept this goroutine off the CPU
			// during the warmup are not counted as the window's. A link
			// so fast that every read fills the buffer opens it a second
			// late instead, where such a backlog is a small share.
			if !measuring && now.Sub(start) >= warmup && (k < len(buf) || now.Sub(start) >= warmup+time.Second) {
				measuring, mstart = true, now
				window(true)
			} else if measuring {
				n += int64(k)
			}
			if measuring && now.Sub(mstart) >= d {
				window(false)
				resc <- res{tr: Transfer{Bytes: n, Duration: now.Sub(mstart)}}
				return
			}
			if err != nil {
				resc <- res{err: fmt.Errorf("receiver: %w after %d bytes", err, n)}
				return
			}
		}
	}()
	c, err := from.DialContext(ctx, "tcp4", l.Addr().String())
	if err != nil {
		return Transfer{}, err
	}
	defer c.Close()
	stop := time.Now().Add(warmup + d + 10*time.Second)
	buf := make([]byte, 64<<10)
	go func() {
		for time.Now().Before(stop) {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()
	select {
	case r := <-resc:
		return r.tr, r.err
	case <-ctx.Done():
		return Transfer{}, ctx.Err()
	}
}

// UDPTrain sends n datagrams of size bytes from namespace from to addr (a
// receiver in namespace to) at rate pps and returns how many arrived.
func UDPTrain(ctx context.Context, from, to, addr string, n, size, pps int) (received int, err error) {
	got, err := UDPTrainSeqs(ctx, from, to, addr, n, size, pps)
	return len(got), err
}

// UDPTrainSeqs is UDPTrain that says which datagrams arrived, by their
// sequence numbers (0 to n-1): a drop pattern.
func UDPTrainSeqs(ctx context.Context, from, to, addr string, n, size, pps int) (map[uint32]bool, error) {
	return UDPTrainAt(ctx, from, to, addr, time.Time{}, n, size, pps)
}

// UDPTrainAt is UDPTrainSeqs whose datagram i leaves at start + i/pps
// (start zero: once its sockets are ready), so that a sequence number
// says when it was sent. Its sockets, in two namespaces, can take
// hundreds of milliseconds on a loaded machine: sockets ready after start
// are an error, as the times would not hold.
func UDPTrainAt(ctx context.Context, from, to, addr string, start time.Time, n, size, pps int) (map[uint32]bool, error) {
	size = max(size, 4)
	received := map[uint32]bool{}
	rc, err := ListenPacket(to, addr)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	// The reader writes received until it stops: closed, then waited for.
	defer func() {
		rc.Close()
		wg.Wait()
	}()
	// The reader reads until a second after the last datagram was sent: a
	// silence while the sender still sends is the link's (a cut, a lost
	// ARP request retried after a second), not the end of the train.
	var sentAll atomic.Int64 // unix nanoseconds of the last send; 0 while sending
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			_ = rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			m, _, err := rc.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if last := sentAll.Load(); last != 0 && time.Since(time.Unix(0, last)) > time.Second {
					return
				}
				continue
			}
			if err != nil {
				return
			}
			if m >= 4 {
				received[binary.BigEndian.Uint32(buf)] = true
			}
		}
	}()
	sc, err := Dial(ctx, from, "udp4", rc.LocalAddr().String())
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	payload := make([]byte, size)
	gap := time.Second / time.Duration(pps)
	next := time.Now()
	if !start.IsZero() {
		if late := next.Sub(start); late > gap {
			return nil, fmt.Errorf("the train's sockets were ready %v after its start: start it later", late.Round(time.Millisecond))
		}
		time.Sleep(time.Until(start))
		next = start
	}
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(payload, uint32(i))
		if _, err := sc.Write(payload); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		next = next.Add(gap)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
	}
	sentAll.Store(time.Now().UnixNano())
	wg.Wait()
	return received, nil
}

// Echo serves UDP echo in namespace ns until the returned close is called.
func Echo(ns, addr string) (net.Addr, func(), error) { return EchoOn(NS(ns), addr) }

// EchoOn serves UDP echo on h until the returned close is called.
func EchoOn(h Host, addr string) (net.Addr, func(), error) {
	c, err := h.ListenPacket("udp4", addr)
	if err != nil {
		return nil, nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], a)
		}
	}()
	return c.LocalAddr(), func() { c.Close() }, nil
}

// RTTs sends n probes from namespace ns to an echo server at addr, gap
// apart, and returns the round-trip times of those answered, sorted.
func RTTs(ctx context.Context, ns, addr string, n int, gap time.Duration) ([]time.Duration, error) {
	return RTTsFrom(ctx, NS(ns), addr, n, gap)
}

// RTTsFrom is RTTs from a Host.
func RTTsFrom(ctx context.Context, h Host, addr string, n int, gap time.Duration) ([]time.Duration, error) {
	c, err := h.DialContext(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var (
		mu   sync.Mutex
		sent = map[uint32]time.Time{}
		out  []time.Duration
		done = make(chan struct{})
	)
	var got int
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			mu.Lock()
			all := got == n
			mu.Unlock()
			if all {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if k < 4 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if t, ok := sent[binary.BigEndian.Uint32(buf)]; ok {
				out = append(out, now.Sub(t))
				delete(sent, binary.BigEndian.Uint32(buf))
				got++
			}
			mu.Unlock()
		}
	}()
	p := make([]byte, 64)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(p, uint32(i))
		mu.Lock()
		sent[uint32(i)] = time.Now()
		mu.Unlock()
		if _, err := c.Write(p); err != nil {
			return nil, err
		}
		time.Sleep(gap)
	}
	<-done
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Run runs a command in namespace ns (ip netns exec) and returns its output.
func Run(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// Drain reads r to the end (helper for servers in tests).
func Drain(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
