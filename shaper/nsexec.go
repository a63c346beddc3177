package shaper

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on an OS thread switched into the namespace at path ("" =
// the caller's). The thread is discarded afterwards if it cannot be
// switched back, so no other goroutine ever runs in the wrong namespace.
func inNetns(path string, fn func() error) error {
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
			return // thread stays locked and dies with the goroutine
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

func readSysctlIn(nsPath, key string) (string, error) {
	var v string
	err := inNetns(nsPath, func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func writeSysctlIn(nsPath, key, val string) error {
	return inNetns(nsPath, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644)
	})
}
