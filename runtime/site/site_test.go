package site_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/site"
)

// freePorts reserves n UDP ports on loopback.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.LocalAddr().String())
		c.Close()
	}
	return out
}

// start runs coordinators for nodes of one site, each told the others.
func start(t *testing.T, siteName string, keys [][]byte, nodes ...string) []*site.Coordinator {
	t.Helper()
	addrs := freePorts(t, len(nodes))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out []*site.Coordinator
	for i, n := range nodes {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		var key []byte
		if keys != nil {
			key = keys[i]
		}
		c, err := site.New(site.Config{Site: siteName, Node: n, Listen: addrs[i], Peers: peers, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		go c.Run(ctx)
		out = append(out, c)
	}
	return out
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFlushersAndQuiet(t *testing.T) {
	cs := start(t, "store", nil, "a", "b", "c")
	if n := cs[0].Flushers(); n != 1 {
		t.Fatalf("alone and idle: %d flushers, want 1", n)
	}
	cs[1].SetFlushing(true)
	eventually(t, "a hears b flushing", 2*time.Second, func() bool { return cs[0].Flushing() })
	cs[2].SetFlushing(true)
	eventually(t, "a hears b and c flushing", 2*time.Second, func() bool { return cs[0].Flushers() == 2 })
	cs[0].SetFlushing(true)
	if n := cs[0].Flushers(); n != 3 {
		t.Errorf("all three flushing: a counts %d", n)
	}
	cs[2].SetFlushing(false)
	eventually(t, "a hears c stop", 2*time.Second, func() bool { return cs[0].Flushers() == 2 })

	// A gate's quiet reaches every runtime, and is bounded.
	cs[0].Quiet(time.Hour)
	for i, c := range cs {
		eventually(t, fmt.Sprintf("%d hears the quiet", i), time.Second, func() bool { return time.Until(c.QuietUntil()) > 2*time.Second })
		if left := time.Until(c.QuietUntil()); left > site.MaxQuiet {
			t.Errorf("runtime %d holds for %s: above MaxQuiet", i, left)
		}
	}
	// The others know a neighbour measures; the one that asked does not
	// wait for itself.
	if until := cs[1].PeerQuietUntil(); time.Until(until) < 2*time.Second {
		t.Errorf("b does not know a's gate measures: until %s", until)
	}
	if until := cs[0].PeerQuietUntil(); !until.IsZero() {
		t.Errorf("a waits for its own quiet: until %s", until)
	}
	if !cs[1].PeerQuietDuring(time.Now().Add(-time.Second), time.Now()) {
		t.Error("b does not see a's quiet overlapping now")
	}
	// a asks again while its quiet goes on: extended, never past MaxQuiet
	// from its start.
	cs[0].Quiet(time.Hour)
	time.Sleep(200 * time.Millisecond)
	if left := time.Until(cs[1].QuietUntil()); left > site.MaxQuiet {
		t.Errorf("a's extension holds b for %s, past MaxQuiet", left)
	}
	// c's shorter quiet, then its Done, do not end a's.
	cs[2].Quiet(time.Second)
	time.Sleep(100 * time.Millisecond)
	cs[2].QuietDone()
	time.Sleep(200 * time.Millisecond)
	if left := time.Until(cs[1].PeerQuietUntil()); left < 5*time.Second {
		t.Errorf("c's done ended a's quiet at b: %s left", left)
	}
	// a's done ends it; a's next quiet is not heard before as long again
	// has passed (a peer holds the flush at most half the time).
	cs[0].QuietDone()
	time.Sleep(200 * time.Millisecond)
	if left := time.Until(cs[1].PeerQuietUntil()); left > 0 {
		t.Errorf("a's done did not end its quiet at b: %s left", left)
	}
	cs[0].Quiet(time.Second)
	time.Sleep(200 * time.Millisecond)
	if left := time.Until(cs[1].PeerQuietUntil()); left > 0 {
		t.Errorf("a's next quiet right after its last was heard: %s", left)
	}
}

// Datagrams from an address that is not a peer's are dropped (no key).
func TestStrangersAreIgnored(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	aAddr := freePorts(t, 1)[0]
	a, err := site.New(site.Config{Site: "store", Node: "a", Listen: aAddr, Peers: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	// Another loopback address: the same site's name, not a's peer.
	m, err := site.New(site.Config{Site: "store", Node: "mallory", Listen: "127.0.0.2:0", Peers: []string{aAddr}})
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	m.SetFlushing(true)
	m.Quiet(time.Second)
	time.Sleep(700 * time.Millisecond)
	if a.Flushing() || time.Until(a.QuietUntil()) > 0 {
		t.Error("a heard a runtime that is not its peer")
	}
}
