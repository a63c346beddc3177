package kind

import (
	"net/netip"
	"testing"
)

func TestParseAddrLink(t *testing.T) {
	out := `1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 172.18.0.3/16 brd 172.18.255.255 scope global eth0\       valid_lft forever preferred_lft forever
3: eth1@if12    inet 172.19.0.2/16 brd 172.19.255.255 scope global eth1\       valid_lft forever preferred_lft forever
`
	tests := []struct {
		addr, want string
	}{
		{"172.18.0.3", "eth0"},
		{"172.19.0.2", "eth1"},
		{"172.19.0.3", ""},
		{"127.0.0.1", "lo"},
	}
	for _, tt := range tests {
		if got := parseAddrLink(out, netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("parseAddrLink(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
