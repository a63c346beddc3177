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
	if _, until := cs[1].PeerQuiet(); time.Until(until) < 2*time.Second {
		t.Errorf("b does not know a's gate measures: until %s", until)
	}
	if _, until := cs[0].PeerQuiet(); !until.IsZero() {
		t.Errorf("a waits for its own quiet: until %s", until)
	}
	// A peer that asks again at once is not heard: it holds the flush at
	// most half the time.
	before := cs[1].QuietUntil()
	cs[2].Quiet(100 * time.Millisecond) // c may ask: a's request was a's
	cs[0].Quiet(time.Hour)
	time.Sleep(300 * time.Millisecond)
	if after := cs[1].QuietUntil(); after.Sub(before) > 50*time.Millisecond {
		t.Errorf("a's second quiet extended b's hold by %s", after.Sub(before))
	}
}

func TestForeignAndForgedAreIgnored(t *testing.T) {
	keys := [][]byte{[]byte("k1k1k1k1k1k1k1k1"), []byte("k1k1k1k1k1k1k1k1"), []byte("forgery-forgery!")}
	cs := start(t, "store", keys, "a", "b", "mallory")
	cs[1].SetFlushing(true)
	cs[2].SetFlushing(true)
	cs[2].Quiet(time.Second)
	eventually(t, "a hears b", 2*time.Second, func() bool { return cs[0].Flushers() == 1 && cs[0].Flushing() })
	time.Sleep(600 * time.Millisecond)
	if n := cs[0].Flushers(); n != 1 {
		t.Errorf("a counts %d flushers: the one with the wrong key was heard", n)
	}
	if time.Until(cs[0].QuietUntil()) > 0 {
		t.Error("a holds for a quiet asked with the wrong key")
	}
	if _, err := site.New(site.Config{Site: "bad/name", Node: "a"}); err == nil {
		t.Error("a site name with '/' accepted")
	}
	if _, err := site.New(site.Config{Site: "s", Node: "a", Listen: "127.0.0.1:0", Peers: []string{"nohost"}}); err == nil {
		t.Error("a peer without a port accepted")
	}
}
