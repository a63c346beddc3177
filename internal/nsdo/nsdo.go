// Package nsdo runs code inside a network namespace: on an OS thread
// switched into it, which is thrown away if it cannot be switched back, so
// no other goroutine ever runs in the wrong namespace. Sockets created
// inside stay in that namespace; processes started inside inherit it.
package nsdo

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Path resolves a namespace given as a name under /run/netns or a path;
// "" stays "" (the caller's namespace).
func Path(ns string) string {
	if ns == "" || strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join("/run/netns", ns)
}

// Do runs fn inside the namespace ns (a name or a path; "" runs fn here).
func Do(ns string, fn func() error) error {
	path := Path(ns)
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", path, err)
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", path, err)
			return // the thread stays locked and dies with the goroutine
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- ferr
			return // locked: the thread is thrown away
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext returns a dial function whose connections are made from
// inside the namespace ns (for http.Transport, client-go's rest.Config.Dial
// and the like).
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return
		})
		return c, err
	}
}
