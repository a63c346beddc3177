package agent

import "testing"

func TestInContainer(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	other := "f123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, cgroup string
		want         bool
	}{
		{"systemd driver, cgroup v2", "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1234.slice/cri-containerd-" + id + ".scope\n", true},
		{"cgroupfs driver, cgroup v1", "12:pids:/kubepods/besteffort/pod1234/" + id + "\n11:memory:/kubepods/besteffort/pod1234/" + id + "\n", true},
		{"seen from another cgroup namespace", "0::/../../kubepods-burstable-pod1234.slice/cri-containerd-" + id + ".scope\n", true},
		{"CRI-O", "0::/kubepods.slice/kubepods-pod1234.slice/crio-" + id + ".scope\n", true},
		{"CRI-O's conmon, outside the container", "0::/kubepods.slice/kubepods-pod1234.slice/crio-conmon-" + id + ".scope\n", false},
		{"Docker", "0::/system.slice/docker-" + id + ".scope\n", true},
		{"another container", "0::/kubepods/pod1234/cri-containerd-" + other + ".scope\n", false},
		{"the pod's cgroup, not a container's", "0::/kubepods/besteffort/pod" + id + "\n", false},
		{"an ID as a prefix only", "0::/kubepods/pod1234/" + id + "-extra\n", false},
		{"the host", "0::/init.scope\n", false},
		{"garbage", "no colons here", false},
	} {
		if got := inContainer(tc.cgroup, []string{id}); got != tc.want {
			t.Errorf("%s: inContainer = %v, want %v", tc.name, got, tc.want)
		}
	}
}
