package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/ledger"
)

// EngineOwner is the ledger owner of a dockerd the engine started.
const EngineOwner = "docker-engine"

// Engine is a running Docker engine, reached through the docker CLI (as
// kind's library reaches it).
type Engine struct {
	// Started: this process started dockerd (it is in the ledger).
	Started bool
	// Wrapped: containers run through the runtime wrapper.
	Wrapped bool
}

// EngineOptions configure EnsureEngine.
type EngineOptions struct {
	// Ledger records a dockerd it starts (owner EngineOwner).
	Ledger *ledger.Ledger
	// Log gets progress; nil discards it.
	Log *slog.Logger
	// Wait is how long a starting dockerd may take (default 60 s).
	Wait time.Duration
}

// ErrNoDocker is returned (wrapped) when neither a running engine nor
// dockerd to start one is found.
var ErrNoDocker = errors.New("no Docker engine")

// EnsureEngine returns the Docker engine that is running, or starts
// Debian's dockerd (recorded in the ledger) when none is. Where the
// machine's capability bounding set lacks CAP_SYS_RESOURCE, the engine's
// default runtime must be the wrapper; one already running without it is
// refused with what to do.
func EnsureEngine(ctx context.Context, o EngineOptions) (*Engine, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Wait == 0 {
		o.Wait = 60 * time.Second
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, fmt.Errorf("%w: the docker CLI is not on PATH (apt-get install docker.io)", ErrNoDocker)
	}
	missing, err := MissingSysResource()
	if err != nil {
		return nil, err
	}
	if info, err := engineInfo(ctx); err == nil {
		e := &Engine{Wrapped: info.DefaultRuntime == WrapperName}
		if missing && !e.Wrapped {
			return nil, fmt.Errorf("the running Docker engine cannot start privileged containers here: this machine's capability bounding set lacks CAP_SYS_RESOURCE and the engine's default runtime is %q; stop that dockerd and let edgefault start one (it registers %s, which drops that capability), or start it yourself with --add-runtime %s=<a copy of edgefault> --default-runtime %s",
				info.DefaultRuntime, WrapperName, WrapperName, WrapperName)
		}
		return e, nil
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("%w: no engine answers and dockerd is not installed (apt-get install docker.io)", ErrNoDocker)
	}
	if o.Ledger == nil {
		return nil, errors.New("starting dockerd needs a ledger to record it in")
	}
	dir := filepath.Dir(o.Ledger.Dir())
	args := []string{"--log-level", "warn"}
	if missing {
		wrapper := filepath.Join(dir, WrapperName)
		if err := copyExecutable(wrapper); err != nil {
			return nil, fmt.Errorf("install the runtime wrapper: %w", err)
		}
		args = append(args, "--add-runtime", WrapperName+"="+wrapper, "--default-runtime", WrapperName)
	}
	if p := forwardPolicy(); p != "" {
		if err := os.WriteFile(filepath.Join(dir, forwardPolicyFile), []byte(p+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(dir, "dockerd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// dockerd outlives this process: it is stopped by StopEngine or
	// edgefault cleanup, by the PID the ledger holds.
	cmd := exec.Command(dockerd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	o.Log.Info("starting dockerd", "wrapped", missing, "log", logPath)
	if _, err := o.Ledger.Start(EngineOwner, "dockerd", cmd, true, nil); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	for {
		if _, err := engineInfo(ctx); err == nil {
			return &Engine{Started: true, Wrapped: missing}, nil
		}
		select {
		case err := <-done:
			return nil, fmt.Errorf("dockerd exited at start (%v): see %s", err, logPath)
		case <-deadline.C:
			return nil, fmt.Errorf("dockerd did not answer within %s: see %s", o.Wait, logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// StopEngine stops a dockerd EnsureEngine started (nothing if it started
// none), giving it time to stop the containers it runs, and puts back the
// firewall's FORWARD policy it changed.
func StopEngine(l *ledger.Ledger) error {
	entries, err := l.Entries(EngineOwner)
	if err != nil || len(entries) == 0 {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Kind == ledger.KindProcess && !e.Removed {
			if err := ledger.StopProcess(e, 45*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	dir := filepath.Dir(l.Dir())
	if b, err := os.ReadFile(filepath.Join(dir, forwardPolicyFile)); err == nil {
		if p := strings.TrimSpace(string(b)); p == "ACCEPT" {
			// dockerd sets DROP when it turns forwarding on; the
			// embedded fleet and the rest of the machine had ACCEPT.
			if out, err := exec.Command("iptables", "-P", "FORWARD", p).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("restore the FORWARD policy: %v: %s", err, out))
			}
		}
		os.Remove(filepath.Join(dir, forwardPolicyFile))
	}
	// No kind node of edgefault's runs without the engine.
	if err := restoreInotify(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, l.Sweep(EngineOwner, nil))...)
}

// forwardPolicyFile keeps the firewall's FORWARD policy from before dockerd
// started.
const forwardPolicyFile = "forward-policy"

// forwardPolicy is the iptables FORWARD chain's policy ("" if unknown).
func forwardPolicy() string {
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(f) == 3 && f[0] == "-P" {
		return f[2]
	}
	return ""
}

type dockerInfo struct {
	DefaultRuntime string `json:"DefaultRuntime"`
	ServerVersion  string `json:"ServerVersion"`
}

func engineInfo(ctx context.Context) (dockerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := docker(ctx, nil, "info", "--format", "{{json .}}")
	if err != nil {
		return dockerInfo{}, err
	}
	var i dockerInfo
	if err := json.Unmarshal(out, &i); err != nil {
		return dockerInfo{}, fmt.Errorf("docker info: %w", err)
	}
	if i.ServerVersion == "" {
		return dockerInfo{}, errors.New("docker info: no server")
	}
	return i, nil
}

// docker runs the docker CLI; its stderr is in the error.
func docker(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("docker %s: %w: %s", strings.Join(args[:min(len(args), 2)], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// notFound: the docker CLI said the object does not exist (not that the
// engine could not be reached, which must not count as removed).
func notFound(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

// copyExecutable copies the running binary to path (a copy, not a link:
// a test binary is deleted when its run ends, dockerd keeps using this).
func copyExecutable(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
