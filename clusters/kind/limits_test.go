package kind

import (
	"os"
	"path/filepath"
	"testing"
)

// restoreInotify writes back only the keys it knows, with numbers: the
// state file is not a way to write any sysctl.
func TestRestoreInotifyIgnoresOtherKeys(t *testing.T) {
	dir := t.TempDir()
	bad := "kernel/core_pattern=|/tmp/x\nfs/inotify/max_user_instances=abc\n../../etc/passwd=1\n"
	if err := os.WriteFile(filepath.Join(dir, inotifyFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restoreInotify(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, inotifyFile)); !os.IsNotExist(err) {
		t.Errorf("the state file is left: %v", err)
	}
	if !validInotifyKey("fs/inotify/max_user_watches") || validInotifyKey("kernel/core_pattern") {
		t.Error("validInotifyKey")
	}
}
