package ledger

import (
	"fmt"
	"os"
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
// grace. It never signals a PID that now belongs to another process.
func StopProcess(e Entry, grace time.Duration) error {
	if !e.Alive() {
		return nil
	}
	target := e.PID
	if e.Group {
		target = -e.PID // the process and everything it started
	}
	if err := syscall.Kill(target, syscall.SIGTERM); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("stop process %d (%s): %w", e.PID, e.Name, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !e.Alive() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.Alive() {
		_ = syscall.Kill(target, syscall.SIGKILL)
		for i := 0; i < 100 && e.Alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if e.Alive() {
		return fmt.Errorf("process %d (%s) did not exit after SIGKILL", e.PID, e.Name)
	}
	return nil
}
