package kind

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Every kind node runs systemd, containerd and a kubelet, each holding
// inotify instances; with the kernel's default of 128 instances per user,
// the kubelets of the fifth or sixth node on a machine fail with
// "inotify_init: too many open files" and the cluster never gets Ready
// (kind's known issue). These are kind's recommended floors.
var inotifyFloors = []struct {
	key   string
	floor int
}{
	{"fs/inotify/max_user_instances", 512},
	{"fs/inotify/max_user_watches", 524288},
}

// inotifyFile keeps the limits from before edgefault raised them, so that
// StopEngine can put them back.
const inotifyFile = "inotify-limits"

// raiseInotify raises the inotify limits to kind's floors where they are
// lower (never lowers them), remembering the first values it saw under
// stateDir.
func raiseInotify(stateDir string, log *slog.Logger) error {
	path := filepath.Join(stateDir, inotifyFile)
	saved, _ := os.ReadFile(path)
	for _, l := range inotifyFloors {
		proc := filepath.Join("/proc/sys", l.key)
		b, err := os.ReadFile(proc)
		if err != nil {
			return err
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %q: %w", proc, b, err)
		}
		if cur >= l.floor {
			continue
		}
		// The first value seen is kept; it is saved before the change, so
		// a failure leaves nothing raised and unrecorded.
		if !strings.Contains(string(saved), l.key+"=") {
			saved = append(saved, fmt.Sprintf("%s=%d\n", l.key, cur)...)
			if err := os.WriteFile(path, saved, 0o644); err != nil {
				return err
			}
		}
		if err := os.WriteFile(proc, []byte(strconv.Itoa(l.floor)), 0); err != nil {
			return fmt.Errorf("raise %s from %d to %d (kind nodes' kubelets fail below it): %w", l.key, cur, l.floor, err)
		}
		log.Info("raised an inotify limit for kind's nodes", "sysctl", strings.ReplaceAll(l.key, "/", "."), "from", cur, "to", l.floor)
	}
	return nil
}

// restoreInotify puts back the limits raiseInotify saved.
func restoreInotify(stateDir string) error {
	path := filepath.Join(stateDir, inotifyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Fields(string(b)) {
		key, val, ok := strings.Cut(line, "=")
		if !ok || !validInotifyKey(key) {
			continue
		}
		if _, err := strconv.Atoi(val); err != nil {
			continue
		}
		errs = append(errs, os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore the inotify limits: %w", err)
	}
	return os.Remove(path)
}

func validInotifyKey(key string) bool {
	for _, l := range inotifyFloors {
		if l.key == key {
			return true
		}
	}
	return false
}
