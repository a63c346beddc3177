package kind

import "syscall"

// detached puts a long-lived child in its own session, so a terminal's
// signals to this process do not reach it.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
