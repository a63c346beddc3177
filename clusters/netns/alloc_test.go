package netns

import (
	"testing"

	"github.com/edgefault/edgefault/scenarios"
)

func TestLANBlocksGrowBeyondASlash24(t *testing.T) {
	var a lanAllocator
	for _, tc := range []struct {
		hosts int
		want  string
	}{{3, "10.0.1.0/24"}, {253, "10.0.2.0/24"}, {300, "10.0.4.0/23"}, {3, "10.0.6.0/24"}, {5000, "10.0.32.0/19"}} {
		p, err := a.block(tc.hosts)
		if err != nil || p.String() != tc.want {
			t.Errorf("block(%d) = %v, %v; want %s", tc.hosts, p, err, tc.want)
		}
	}
}

func TestPlanNamesAddressesAndRoutes(t *testing.T) {
	f, err := plan("fl", &scenarios.Default().Spec)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]member{}
	for _, m := range f.All {
		byName[m.Name] = m
		if m.Namespace != "fl-"+m.Name {
			t.Errorf("%s lives in %s", m.Name, m.Namespace)
		}
	}
	a1, gwa, gwb := byName["factory-a1"], byName["factory-gw-a"], byName["factory-gw-b"]
	if a1.Via != gwa.Address || byName["factory-b1"].Via != gwb.Address {
		t.Errorf("factory nodes route via %s/%s, want their building's gateways %s/%s", a1.Via, byName["factory-b1"].Via, gwa.Address, gwb.Address)
	}
	if a1.Bridge != gwb.Bridge || a1.Prefix != 24 {
		t.Errorf("a building-A device must share the site LAN with gateway B")
	}
	if gwa.WANAddress == gwb.WANAddress || gwa.Via != cloudAddr.String() {
		t.Errorf("gateways: %+v %+v", gwa, gwb)
	}
	if byName["store-pos"].Bridge == a1.Bridge {
		t.Error("two sites share a LAN")
	}
}
