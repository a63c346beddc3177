// Command pause is a pod's sandbox process on edgefault's kind node image:
// it holds the pod's namespaces, reaps orphans (it is PID 1 of a pod that
// shares its process namespace) and exits on SIGINT or SIGTERM. The node
// image builder compiles this file on its own (it is embedded in the kind
// package), since the upstream pause image cannot be pulled offline.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("pause (edgefault)\n")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
