package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare of the cgroup's limit is given to the Go runtime as its
// soft memory limit: the collector works harder as the heap nears it, so a
// burst of large bodies is collected instead of taking the container past
// its limit (the rest is for stacks, the buffer's mapped pages, the kernel's
// socket buffers).
const memoryLimitShare = 0.75

// applyMemoryLimit sets the Go runtime's soft memory limit from the memory
// cgroup the process runs in (a container's limit), unless GOMEMLIMIT says
// otherwise. It returns the limit set, 0 if none.
func applyMemoryLimit(log *slog.Logger) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := cgroupMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup")
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Debug("memory limit from the cgroup", "cgroupBytes", limit, "goSoftLimitBytes", soft)
	return soft
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup (v2
// memory.max, or v1 memory.limit_in_bytes); 0 when there is none.
func cgroupMemoryLimit(procCgroup, root string) int64 {
	b, _ := os.ReadFile(procCgroup)
	// Inside a container's cgroup namespace (or with a host path that is
	// not mounted here) the process's own cgroup is the mount's root.
	lines := append(strings.Split(string(b), "\n"), "0::/", "0:memory:/")
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = filepath.Join(root, parts[2], "memory.max")
		case strings.Contains(","+parts[1]+",", ",memory,"):
			file = filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes")
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		// "max" (v2) or a page-rounded 2^63 (v1): no limit.
		if err != nil || n <= 0 || n >= 1<<60 {
			continue
		}
		return n
	}
	return 0
}
