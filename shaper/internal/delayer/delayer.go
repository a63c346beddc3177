// Package delayer holds packets handed to it through NFQUEUE for a fixed
// delay (plus uniform jitter) and then accepts them, in arrival order. It is
// the delay and jitter of the shaper's fallback backend, for kernels without
// sch_netem.
package delayer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
)

// Config says which queue to serve and how long to hold packets.
type Config struct {
	// NetNS is an open file descriptor of the network namespace whose queue
	// to serve (0: the caller's).
	NetNS int
	// Queue is the NFQUEUE number the nft rule sends packets to.
	Queue uint16
	// Delay is the mean hold time. Jitter moves it within
	// [Delay-Jitter, Delay+Jitter] as a reflected random walk whose step
	// between two packets is at most their spacing: in the long run the
	// offset is uniform over that range and its mean is zero, and a packet
	// can never be due before the one ahead of it, so jitter never
	// reorders (and, unlike a clamp, never biases the delay upwards).
	Delay, Jitter time.Duration
	// Loss drops this percentage of packets (0-100) as they arrive.
	Loss float64
	// Seed is what loss and jitter draw from: the same seed on the same
	// packets gives the same drops and delays. 0 draws a random seed.
	Seed uint64
	// MaxQueue bounds the packets held at once (the kernel drops beyond it).
	MaxQueue uint32
}

// Stats counts what the delayer did.
type Stats struct {
	Packets  uint64
	Dropped  uint64
	Failed   uint64
	MaxDepth int64
}

// key is a ChaCha8 key for one use of seed.
func key(seed uint64, use byte) (k [32]byte) {
	binary.LittleEndian.PutUint64(k[:], seed)
	k[8] = use
	return k
}

type held struct {
	id  uint32
	due time.Time
}

// Run serves the queue until ctx is done, calling ready once it is bound.
// After ctx is done it keeps releasing what it holds at the due times and
// returns when nothing is left, so stopping it never drops or hurries a
// packet.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func()) (Stats, error) {
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 65536
	}
	q, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        cfg.NetNS,
		NfQueue:      cfg.Queue,
		MaxQueueLen:  cfg.MaxQueue,
		MaxPacketLen: 0,
		Copymode:     nfqueue.NfQnlCopyMeta,
		// GSO: accept super-packets whole instead of having the kernel
		// segment (and checksum) them for us.
		Flags:        nfqueue.NfQaCfgFlagGSO,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return Stats{}, fmt.Errorf("open nfqueue %d: %w", cfg.Queue, err)
	}
	defer q.Close()
	// A deep socket buffer: when this process is briefly starved of CPU,
	// the kernel's packet messages wait in it instead of being dropped
	// (ENOBUFS drops the packet, not just the message). SO_RCVBUFFORCE
	// (root) goes past net.core.rmem_max.
	if rc, err := q.Con.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
				_ = q.Con.SetReadBuffer(8 << 20)
			}
		})
	}

	var (
		packets, dropped, failed, maxDepth, depth atomic.Int64
		mu                                        sync.Mutex // guards last, closed and sends on fifo
		last, lastArrival                         time.Time
		offset                                    time.Duration
		closed                                    bool
	)
	fifo := make(chan held, cfg.MaxQueue)
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	// A generator each, keyed apart, so that how many draws jitter makes
	// (none when off) never shifts which packets are lost.
	rng := rand.New(rand.NewChaCha8(key(seed, 2)))
	lossRng := rand.New(rand.NewChaCha8(key(seed, 1)))
	regCtx, stopReg := context.WithCancel(context.Background())
	defer stopReg()
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			// Too late to hold: let it go now rather than leave it to be
			// dropped when the queue is unbound.
			_ = q.SetVerdict(*a.PacketID, nfqueue.NfAccept)
			return 0
		}
		// Only IPv4 packets draw: the same traffic then meets the same
		// drops though the kernel's own IPv6 chatter (router and
		// neighbour solicitations) comes and goes at its own times.
		if cfg.Loss > 0 && (a.HwProtocol == nil || *a.HwProtocol == unix.ETH_P_IP) && lossRng.Float64()*100 < cfg.Loss {
			dropped.Add(1)
			if err := q.SetVerdict(*a.PacketID, nfqueue.NfDrop); err != nil {
				failed.Add(1)
			}
			return 0
		}
		now := time.Now()
		if j := cfg.Jitter; j > 0 {
			step := j
			if !lastArrival.IsZero() && now.Sub(lastArrival) < step {
				step = now.Sub(lastArrival)
			}
			offset += time.Duration(rng.Int64N(int64(2*step)+1)) - step
			if offset > j {
				offset = 2*j - offset
			} else if offset < -j {
				offset = -2*j - offset
			}
		}
		lastArrival = now
		due := now.Add(cfg.Delay + offset)
		if due.Before(last) {
			due = last // FIFO: never overtake the packet ahead (timer granularity only)
		}
		last = due
		if d := depth.Add(1); d > maxDepth.Load() {
			maxDepth.Store(d)
		}
		packets.Add(1)
		fifo <- held{id: *a.PacketID, due: due}
		return 0
	}
	errf := func(e error) int {
		if errors.Is(e, context.Canceled) {
			return 1
		}
		log.Debug("nfqueue receive", "err", e)
		return 0 // keep going: ENOBUFS and the like are transient
	}
	if err := q.RegisterWithErrorFunc(regCtx, hook, errf); err != nil {
		return Stats{}, fmt.Errorf("register nfqueue %d: %w", cfg.Queue, err)
	}
	if ready != nil {
		ready()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for h := range fifo {
			if w := time.Until(h.due); w > 0 {
				time.Sleep(w)
			}
			if err := q.SetVerdict(h.id, nfqueue.NfAccept); err != nil {
				failed.Add(1)
			}
			depth.Add(-1)
		}
	}()
	<-ctx.Done()
	// Drain: the rule pointing here has been replaced; give stragglers in
	// the kernel a moment, then release what is held on time.
	for quiet := 0; quiet < 1; {
		before := packets.Load()
		time.Sleep(cfg.Delay + cfg.Jitter + 20*time.Millisecond)
		if depth.Load() == 0 && packets.Load() == before {
			quiet++
		} else {
			quiet = 0
		}
	}
	mu.Lock()
	closed = true
	close(fifo)
	mu.Unlock()
	<-done
	stopReg()
	return Stats{Packets: uint64(packets.Load()), Dropped: uint64(dropped.Load()), Failed: uint64(failed.Load()), MaxDepth: maxDepth.Load()}, nil
}
