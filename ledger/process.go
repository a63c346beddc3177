package ledger

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessStartTime returns a process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat). Together with the PID it names a process
// unambiguously: a recycled PID has a different start time.
func ProcessStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat returns a process's start time and state letter (R, S, Z...).
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	// The command name (field 2) may contain spaces and parentheses.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0][0], err
}

// ProcessEntry describes a running helper process.
func ProcessEntry(pid int, name string) (Entry, error) {
	st, err := ProcessStartTime(pid)
	if err != nil {
		return Entry{}, fmt.Errorf("read start time of process %d: %w", pid, err)
	}
	return Entry{Kind: KindProcess, PID: pid, StartTime: st, Name: name}, nil
}

// Alive reports whether the process e describes is still the one running
// under its PID. A zombie (exited, not yet reaped by a parent that may be
// gone) is not alive.
func (e Entry) Alive() bool {
	if e.Kind != KindProcess || e.PID <= 0 {
		return false
	}
	st, state, err := procStat(e.PID)
	return err == nil && st == e.StartTime && state != 'Z' && state != 'X'
}

// StopProcess stops the process e describes: SIGTERM, then SIGKILL after
// grace. It never signals a PID that now belongs to another process. For a
// group entry it stops every live process of the group, even after the
// leader has gone (a shell that started a server in the background), but
// only processes that are provably the group's (ours).
func StopProcess(e Entry, grace time.Duration) error {
	members := func() []int {
		if e.Group {
			return e.groupMembers()
		}
		if e.Alive() {
			return []int{e.PID}
		}
		return nil
	}
	if len(members()) == 0 {
		return nil
	}
	signal := func(sig syscall.Signal) {
		for _, pid := range members() {
			_ = syscall.Kill(pid, sig)
		}
	}
	signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if len(members()) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	signal(syscall.SIGKILL)
	for i := 0; i < 100 && len(members()) > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if len(members()) > 0 {
		return fmt.Errorf("process %d (%s) did not exit after SIGKILL", e.PID, e.Name)
	}
	return nil
}

// groupMembers lists the live processes of the group e's leader made that
// are provably ours. Linux does not hand out a PID while it is in use as a
// process group ID, so a process now holding the leader's PID with another
// start time means our group is gone entirely (whatever has that group ID
// now is a stranger's); and a process of ours started after our leader.
//
// Once the leader is gone, that is not proof enough: our group may have
// ended entirely, a stranger taken the PID, called setsid and left a child
// behind in a group with our number. Then only processes carrying the
// entry's mark in their environment are ours (an entry from before marks
// keeps the start-time rule). A process of ours that cleared its
// environment is left running rather than risk a stranger.
func (e Entry) groupMembers() []int {
	st, _, err := procStat(e.PID)
	if err == nil && st != e.StartTime {
		return nil
	}
	leaderGone := err != nil
	var out []int
	for _, pid := range groupMembers(e.PID) {
		st, _, err := procStat(pid)
		if err != nil || st < e.StartTime {
			continue
		}
		if leaderGone && e.Mark != "" && !hasMark(pid, e.Mark) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// hasMark says whether the process's environment carries the mark.
func hasMark(pid int, mark string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	want := []byte(markEnv + "=" + mark)
	for _, kv := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// GroupAlive reports whether any live (not zombie) process is in process
// group pgid.
func GroupAlive(pgid int) bool { return len(groupMembers(pgid)) > 0 }

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] state, f[1] ppid, f[2] pgrp
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, pid)
		}
	}
	return out
}
