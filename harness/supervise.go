package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/clusters"
)

// supervisor runs the runtime and the workloads on a fleet's members as
// a kubelet runs containers: what exits is started again (after a back-off
// that doubles from 1 s to 10 s while it keeps failing), every start and
// exit is evidence, and a kill the timeline asked for is marked planned.
type supervisor struct {
	f     clusters.Fleet
	ev    *evidenceLogs
	log   *slog.Logger
	mu    sync.Mutex
	procs []*supervised
	wg    sync.WaitGroup
}

type supervised struct {
	node, name string           // name: "runtime", "workload/NAME"
	c          clusters.Command // what is started, again and again
	mu         sync.Mutex
	cur        clusters.Process
	planned    bool
	stopping   bool
	restarts   int
	stop       chan struct{} // closed by stopAll: cuts a back-off short
}

// run starts c on node under name (c.Name is made from it) and keeps it
// running until stopAll.
func (s *supervisor) run(ctx context.Context, node, name string, c clusters.Command) error {
	c.Name = strings.ReplaceAll(name, "/", "-")
	p := &supervised{node: node, name: name, c: c, stop: make(chan struct{})}
	proc, err := s.f.StartCommand(ctx, node, p.c)
	if err != nil {
		return err
	}
	p.cur = proc
	s.ev.emit(node, "supervisor", "started", "process", name, "id", proc.ID(), "planned", false)
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.watch(ctx, p)
	return nil
}

func (s *supervisor) watch(ctx context.Context, p *supervised) {
	defer s.wg.Done()
	backoff := time.Second
	for {
		p.mu.Lock()
		cur := p.cur
		p.mu.Unlock()
		<-cur.Done()
		_ = cur.Wait(context.Background()) // forgets it in the ledger
		p.mu.Lock()
		if p.stopping || ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		planned := p.planned
		p.planned = false
		p.mu.Unlock()
		s.ev.emit(p.node, "supervisor", "exited", "process", p.name, "id", cur.ID(), "planned", planned)
		wait := backoff
		if planned {
			wait = 0 // a kubelet restarts a killed container at once the first time
		} else {
			s.log.Warn("a supervised process exited; restarting it", "node", p.node, "process", p.name, "in", wait, "log", cur.LogPath())
			backoff = min(2*backoff, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.stop:
			return
		case <-time.After(wait):
		}
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		next, err := s.f.StartCommand(ctx, p.node, p.c)
		if err != nil {
			p.mu.Unlock()
			s.ev.emit(p.node, "supervisor", "start-failed", "process", p.name, "err", err.Error())
			s.log.Error("could not restart", "node", p.node, "process", p.name, "err", err)
			return
		}
		p.cur = next
		p.restarts++
		p.mu.Unlock()
		s.ev.emit(p.node, "supervisor", "started", "process", p.name, "id", next.ID(), "planned", planned)
	}
}

// find lists the supervised processes on node called name ("workload"
// matches every workload).
func (s *supervisor) find(node, name string) []*supervised {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*supervised
	for _, p := range s.procs {
		if p.node != node {
			continue
		}
		if p.name == name || (name == "workload" && strings.HasPrefix(p.name, "workload/")) {
			out = append(out, p)
		}
	}
	return out
}

// kill crashes the process (SIGKILL) or, with graceful, stops it with
// SIGTERM; either way the supervisor starts it again at once.
func (s *supervisor) kill(node, name string, graceful bool) error {
	ps := s.find(node, name)
	if len(ps) == 0 {
		return fmt.Errorf("no %s runs on %s", name, node)
	}
	sig := syscall.SIGKILL
	if graceful {
		sig = syscall.SIGTERM
	}
	for _, p := range ps {
		p.mu.Lock()
		cur := p.cur
		select {
		case <-cur.Done():
			// Already down (crashed, waiting out its back-off): nothing
			// to kill, and its next exit must not pass for planned.
			p.mu.Unlock()
			s.ev.emit(node, "supervisor", "kill-skipped", "process", p.name, "reason", "not running")
			continue
		default:
		}
		p.planned = true
		p.mu.Unlock()
		if err := cur.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %s on %s: %w", name, node, err)
		}
	}
	return nil
}

// stopAll stops everything it runs, workloads before the runtime.
func (s *supervisor) stopAll() {
	s.stop(false)
	s.stop(true)
	s.wg.Wait()
}

// stopWorkloads stops everything but the runtime, which goes on
// forwarding what the workloads had queued.
func (s *supervisor) stopWorkloads() { s.stop(false) }

// stop stops the runtime's processes, or everything else.
func (s *supervisor) stop(runtime bool) {
	s.mu.Lock()
	procs := append([]*supervised(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		if (p.name == "runtime") != runtime {
			continue
		}
		p.mu.Lock()
		if !p.stopping {
			p.stopping = true
			close(p.stop)
		}
		cur := p.cur
		p.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cur.Stop(3 * time.Second); err != nil && !os.IsNotExist(err) {
				s.log.Debug("stop", "node", p.node, "process", p.name, "err", err)
			}
		}()
	}
	wg.Wait()
}
