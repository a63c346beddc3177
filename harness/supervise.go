package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
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
	// off holds the nodes whose power is off: their processes are not
	// started again until the channel is closed (the node boots).
	off map[string]chan struct{}
	wg  sync.WaitGroup
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
		// Nothing starts on a node without power: asked again under p.mu,
		// which powerOff takes to find what to kill.
		for {
			if boot := s.powered(p.node); boot != nil {
				select {
				case <-ctx.Done():
					return
				case <-p.stop:
					return
				case <-boot:
				}
			}
			p.mu.Lock()
			if s.powered(p.node) == nil {
				break
			}
			p.mu.Unlock()
		}
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

// powered is nil while node has power, else closed when it boots.
func (s *supervisor) powered(node string) <-chan struct{} {
	if s == nil {
		return nil // nothing runs yet: nothing was cut
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off[node]
}

// offNodes lists, sorted, the nodes whose power is off.
func (s *supervisor) offNodes() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.off))
	for n := range s.off {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// errNotCut: the power loss did not happen (its disk could not be
// stopped); the node's processes were let go on as they were.
var errNotCut = errors.New("the power was not cut")

// powerOff stops every process on node at once, as a power loss does: all
// are frozen (SIGSTOP) so none acts on what happens next, cut runs (the
// disk stops), then all are killed, and none is started again until
// powerOn. It returns once all have exited. If cut fails, the processes
// go on (SIGCONT) and the error wraps errNotCut.
func (s *supervisor) powerOff(ctx context.Context, node string, cut func() error) error {
	s.mu.Lock()
	if s.off == nil {
		s.off = map[string]chan struct{}{}
	}
	if _, ok := s.off[node]; ok {
		s.mu.Unlock()
		return fmt.Errorf("the power of %s is already off: %w", node, errNotCut)
	}
	s.off[node] = make(chan struct{})
	s.mu.Unlock()
	type victim struct {
		p *supervised
		c clusters.Process
	}
	var running []victim
	for _, p := range s.find(node, "") {
		p.mu.Lock()
		cur := p.cur
		select {
		case <-cur.Done():
		default:
			p.planned = true
			running = append(running, victim{p, cur})
		}
		p.mu.Unlock()
	}
	for _, v := range running {
		if err := v.c.Signal(syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.log.Warn("freeze for a power loss", "node", node, "id", v.c.ID(), "err", err)
		}
	}
	if err := cut(); err != nil {
		for _, v := range running {
			v.p.mu.Lock()
			v.p.planned = false
			v.p.mu.Unlock()
			_ = v.c.Signal(syscall.SIGCONT)
		}
		s.powerOn(node)
		return fmt.Errorf("power off %s: %w (%w)", node, err, errNotCut)
	}
	var errs []error
	for _, v := range running {
		if err := v.c.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("power off %s: kill %s: %w", node, v.c.ID(), err))
		}
	}
	deadline := time.After(10 * time.Second)
	for _, v := range running {
		select {
		case <-v.c.Done():
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			errs = append(errs, fmt.Errorf("power off %s: %s has not exited 10 s after SIGKILL", node, v.c.ID()))
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// powerOn lets node's processes start again (its disk is back).
func (s *supervisor) powerOn(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.off[node]; ok {
		close(ch)
		delete(s.off, node)
	}
}

// find lists the supervised processes on node called name ("workload"
// matches every workload, "" every process).
func (s *supervisor) find(node, name string) []*supervised {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*supervised
	for _, p := range s.procs {
		if p.node != node {
			continue
		}
		if name == "" || p.name == name || (name == "workload" && strings.HasPrefix(p.name, "workload/")) {
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
