package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, self, file, value string
		want                    int64
	}{
		{"v2", "0::/kubepods/pod1/c1\n", "kubepods/pod1/c1/memory.max", "67108864\n", 64 << 20},
		{"v2 unlimited", "0::/user.slice\n", "user.slice/memory.max", "max\n", 0},
		{"v1", "5:cpu,cpuacct:/x\n4:memory:/kubepods/c1\n0::/\n", "memory/kubepods/c1/memory.limit_in_bytes", "33554432\n", 32 << 20},
		{"v1 unlimited", "4:memory:/\n", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
		{"no memory controller", "1:cpu:/\n", "", "", 0},
		{"in a cgroup namespace", "0::/kubepods/pod1/c1\n", "memory.max", "33554432\n", 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "cgroup")
			if err := os.WriteFile(self, []byte(tc.self), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(dir, "fs")
			if tc.file != "" {
				p := filepath.Join(root, tc.file)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.value), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := cgroupMemoryLimit(self, root); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
