package netns_test

import (
	"os"
	"syscall"
)

func inode(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }

func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }
