// Package procmem reads how much memory processes hold, from /proc: their
// resident set (RSS: every page they map, shared or not) and their
// proportional share of it (PSS: each shared page divided among its
// sharers, so the PSS of a set of processes adds up to what they cost the
// machine together).
package procmem

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is what a set of processes holds, in bytes. Anon is the part of
// RSS with no file behind it (mostly their heaps): the RSS of processes
// that run one binary counts its pages in each, Anon does not.
type Usage struct {
	Processes      int
	RSS, Anon, PSS uint64
}

// RSS is a process's resident memory in bytes (0 if it is gone).
func RSS(pid int) uint64 { return fieldKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") }

// PSS is a process's proportional share of resident memory in bytes.
func PSS(pid int) uint64 { return fieldKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") }

// Of sums pids and every process descended from them, each once.
func Of(pids []int) Usage {
	var u Usage
	for _, pid := range WithDescendants(pids) {
		o := One(pid)
		u.Processes += o.Processes
		u.RSS += o.RSS
		u.Anon += o.Anon
		u.PSS += o.PSS
	}
	return u
}

// One is what the process pid holds alone, its children not counted.
func One(pid int) Usage {
	r := RSS(pid)
	if r == 0 {
		return Usage{} // gone, or a kernel thread
	}
	return Usage{Processes: 1, RSS: r, Anon: fieldKB(fmt.Sprintf("/proc/%d/status", pid), "RssAnon:"), PSS: PSS(pid)}
}

// WithDescendants is pids and every live process below them, each once.
func WithDescendants(pids []int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		pid, ppid, ok := parentOf(p)
		if ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	seen := map[int]bool{}
	var out []int
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		out = append(out, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, pid := range pids {
		walk(pid)
	}
	return out
}

// parentOf reads a /proc/PID/stat file's PID and parent PID. The command
// name, field 2, may hold spaces and parentheses: the fields after it
// start after its last ')'.
func parentOf(path string) (pid, ppid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // state, ppid, ...
	if len(f) < 2 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, ' ')]))
	ppid, err2 := strconv.Atoi(f[1])
	return pid, ppid, err1 == nil && err2 == nil
}

// fieldKB reads the "field: N kB" line of a /proc file, in bytes (0 if
// the process or the field is gone).
func fieldKB(path, field string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
