package ledger

import (
	"os/exec"
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
