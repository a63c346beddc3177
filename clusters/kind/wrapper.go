package kind

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// WrapperName is argv[0] of the runtime wrapper and the name dockerd knows
// it by (--add-runtime).
const WrapperName = "edgefault-runc"

// capSysResource is CAP_SYS_RESOURCE's bit (linux/capability.h).
const capSysResource = 24

// MissingSysResource reports whether this process's capability bounding
// set lacks CAP_SYS_RESOURCE: then a privileged container, which asks for
// every capability, cannot start without the wrapper.
func MissingSysResource() (bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			var set uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &set); err != nil {
				return false, fmt.Errorf("CapBnd %q: %w", v, err)
			}
			return set&(1<<capSysResource) == 0, nil
		}
	}
	return false, fmt.Errorf("no CapBnd in /proc/self/status")
}

// RunRuntimeWrapperIfInvoked turns this process into the runtime wrapper if
// it was started as one (argv[0] WrapperName); otherwise it returns at
// once. Binaries that start an Engine call it first thing in main (and in
// TestMain): the engine registers a copy of the running binary as its
// runtime.
//
// The wrapper removes CAP_SYS_RESOURCE from the OCI spec runc is about to
// use (the bundle's config.json for create and run, the --process file for
// exec), then executes runc with the same arguments.
func RunRuntimeWrapperIfInvoked() {
	if filepath.Base(os.Args[0]) != WrapperName {
		return
	}
	if err := wrapRuntime(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", WrapperName, err)
		os.Exit(1)
	}
}

func wrapRuntime(args []string) error {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("runc not found (apt-get install runc): %w", err)
	}
	spec, process := specFiles(args)
	if spec != "" {
		if err := dropCapability(spec, "process", "capabilities"); err != nil {
			return err
		}
	}
	if process != "" {
		if err := dropCapability(process, "capabilities"); err != nil {
			return err
		}
	}
	return syscall.Exec(runc, append([]string{"runc"}, args...), os.Environ())
}

// specFiles finds the OCI spec a runc command line will read: the bundle's
// config.json for create and run (the bundle defaults to the working
// directory), the --process file for exec.
func specFiles(args []string) (spec, process string) {
	cmd, bundle := "", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") {
				return v
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "--bundle" || a == "-b" || strings.HasPrefix(a, "--bundle="):
			bundle = value()
		case a == "--process" || a == "-p" || strings.HasPrefix(a, "--process="):
			process = value()
		case cmd == "" && !strings.HasPrefix(a, "-"):
			cmd = a
		case cmd == "" && runcGlobalTakesValue[strings.SplitN(a, "=", 2)[0]] && !strings.Contains(a, "="):
			i++ // a global flag's value is not the command
		}
	}
	switch cmd {
	case "create", "run":
		if bundle == "" {
			bundle = "."
		}
		return filepath.Join(bundle, "config.json"), ""
	case "exec":
		return "", process
	}
	return "", ""
}

// runcGlobalTakesValue are runc's global flags that take a value.
var runcGlobalTakesValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

// dropCapability rewrites the JSON file at path without CAP_SYS_RESOURCE in
// the capability sets found under keys.
func dropCapability(path string, keys ...string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var node any = doc
	for _, k := range keys {
		m, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		node = m[k]
	}
	caps, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := list[:0]
		for _, c := range list {
			if c == "CAP_SYS_RESOURCE" {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, fi.Mode().Perm())
}
