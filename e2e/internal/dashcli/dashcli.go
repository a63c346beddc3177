// Package dashcli runs `edgefault demo --ui` as a presenter does, for the
// end-to-end suites: it starts the command, waits for the dashboard's
// address it prints, calls the API with the session's token, and ends
// the session with Ctrl-C.
package dashcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/edgefault/edgefault/harness"
)

// Session is a running demo --ui.
type Session struct {
	cmd         *exec.Cmd
	base, token string
	mu          sync.Mutex
	out         bytes.Buffer // stdout and stderr, as printed
	done        chan error
}

// Start runs bin demo --ui args... and waits up to within for the address.
func Start(bin string, within time.Duration, args ...string) (*Session, error) {
	s := &Session{cmd: exec.Command(bin, append([]string{"demo", "--ui"}, args...)...), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			s.mu.Lock()
			s.out.WriteString(l + "\n")
			s.mu.Unlock()
			if u, ok := strings.CutPrefix(l, "the dashboard: "); ok {
				select {
				case found <- u:
				default:
				}
			}
		}
	}()
	go func() {
		err := s.cmd.Wait()
		pw.Close()
		s.done <- err
	}()
	select {
	case u := <-found:
		s.base, s.token, _ = strings.Cut(u, "/?token=")
		return s, nil
	case err := <-s.done:
		s.done <- err
		return nil, fmt.Errorf("demo --ui exited before serving (%v):\n%s", err, s.Output())
	case <-time.After(within):
		_ = s.cmd.Process.Kill()
		return nil, fmt.Errorf("no dashboard address within %v:\n%s", within, s.Output())
	}
}

// Output is what the command printed so far.
func (s *Session) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Base is the dashboard's http://host:port.
func (s *Session) Base() string { return s.base }

// Token is the session's token.
func (s *Session) Token() string { return s.token }

// State reads the session's state.
func (s *Session) State(ctx context.Context) (harness.LiveState, error) {
	var st harness.LiveState
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/state", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/state: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Member is one member of the state.
func Member(st harness.LiveState, name string) (harness.LiveMember, bool) {
	for _, m := range st.Members {
		if m.Name == name {
			return m, true
		}
	}
	return harness.LiveMember{}, false
}

// Post calls an action and returns its status and error text.
func (s *Session) Post(ctx context.Context, path string, body any) (int, string, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
	return resp.StatusCode, e.Error, nil
}

// End sends Ctrl-C and waits up to within for the command to finish.
func (s *Session) End(within time.Duration) error {
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		return err
	}
	select {
	case err := <-s.done:
		return err
	case <-time.After(within):
		_ = s.cmd.Process.Kill()
		return errors.New("demo --ui did not end within " + within.String())
	}
}

// Kill stops the command at once (a test's cleanup).
func (s *Session) Kill() { _ = s.cmd.Process.Kill() }
