package shaper

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/edgefault/edgefault/internal/nsdo"
)

// inNetns runs fn inside the namespace at path ("" = here).
func inNetns(path string, fn func() error) error { return nsdo.Do(path, fn) }

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
