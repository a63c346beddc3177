package ledger

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A group entry whose leader's PID now belongs to a stranger (here: a
// setsid'd sleep that became the leader of a group with that ID) is gone:
// stopping it signals nothing, and above all not the stranger's group.
func TestStopProcessSparesAGroupThatReusedThePID(t *testing.T) {
	stranger := exec.Command("sleep", "30")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stranger.Process.Kill(); _ = stranger.Wait() }()
	pid := stranger.Process.Pid
	st, err := ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	// What the ledger would hold for a helper group that had this PID
	// before (it started earlier: a smaller start time).
	ours := Entry{Kind: KindProcess, PID: pid, StartTime: st - 1, Group: true, Name: "delayer"}
	if err := StopProcess(ours, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	// Our child: killed, it would linger as a zombie until waited for.
	if _, state, err := procStat(pid); err != nil || state == 'Z' || state == 'X' {
		t.Fatalf("the stranger's process was signalled (state %c, %v)", state, err)
	}

	// The entry for the stranger itself (right start time) stops it and
	// the group it leads.
	mine := Entry{Kind: KindProcess, PID: pid, StartTime: st, Group: true, Name: "sleep"}
	if err := StopProcess(mine, time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = stranger.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the group's leader did not stop")
	}
}

// Once a group's leader is gone, only processes carrying the entry's mark
// are the group's: a stranger whose setsid'd leader took our old PID and
// exited, leaving a child in a group with our number, is spared; our own
// orphaned child is stopped.
func TestStopProcessNeedsTheMarkOnceTheLeaderIsGone(t *testing.T) {
	orphan := func(env ...string) (leader, child int) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output() // waits for the leader to exit
		if err != nil {
			t.Fatal(err)
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
		return cmd.Process.Pid, child
	}
	alive := func(pid int) bool {
		_, state, err := procStat(pid)
		return err == nil && state != 'Z' && state != 'X'
	}

	leader, stranger := orphan()
	e := Entry{Kind: KindProcess, PID: leader, StartTime: 1, Group: true, Name: "helper", Mark: "feedface00000000"}
	if err := StopProcess(e, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !alive(stranger) {
		t.Fatal("a process without the mark, in a group whose leader is gone, was signalled")
	}

	leader, ours := orphan(markEnv + "=feedface00000000")
	e.PID = leader
	if err := StopProcess(e, time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && alive(ours); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(ours) {
		t.Fatal("our orphaned child, carrying the mark, was not stopped")
	}
	if !alive(stranger) {
		t.Fatal("the stranger was signalled on the way")
	}
}
