package netns

import (
	"fmt"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// plan lays out the members of spec: names, addresses, ports. The members
// come from the topology's own expansion (scenarios.FleetSpec.Members), so
// the fleet and the scenario agree on every name; each site gets a LAN
// block with its gateways first (.1, .2, ...) and then its nodes.
func plan(name string, spec *scenarios.FleetSpec) (*Fleet, error) {
	f := &Fleet{FleetName: name, Fabric: name + "-fabric", Created: time.Now().UTC()}
	ns := func(n string) string { return name + "-" + n }
	f.All = append(f.All, member{Member: Member{Member: clusters.Member{Name: "cloud", Role: clusters.RoleCloud, Address: cloudAddr.String(), Location: "netns " + ns("cloud")},
		Namespace: ns("cloud")}, Dev: "eth0", Port: "cloud", Bridge: "wan", Prefix: wanPrefix.Bits()})
	all := spec.Members()
	var alloc lanAllocator
	wanNext := u32(cloudAddr) + 1
	gwN, nodeN := 0, 0
	for si, s := range spec.Sites {
		var gws, nodes []scenarios.Member
		for _, m := range all {
			switch {
			case m.Site != s.Name:
			case m.Role == clusters.RoleGateway:
				gws = append(gws, m)
			default:
				nodes = append(nodes, m)
			}
		}
		lan, err := alloc.block(len(gws) + len(nodes))
		if err != nil {
			return nil, err
		}
		br := fmt.Sprintf("lan%d", si)
		f.Sites = append(f.Sites, site{Name: s.Name, LAN: lan.String(), Bridge: br, NoControlPlane: s.ControlPlane == scenarios.ControlPlaneNone})
		host := 1
		gwAddr := map[string]string{}
		for _, g := range gws {
			gwN++
			a := nth(lan, host)
			host++
			gwAddr[g.Name] = a.String()
			wan := addr(wanNext)
			wanNext++
			if !wanPrefix.Contains(wan) {
				return nil, fmt.Errorf("too many gateways for the WAN %v", wanPrefix)
			}
			f.All = append(f.All, member{Member: Member{Member: clusters.Member{Name: g.Name, Role: clusters.RoleGateway, Site: s.Name, Building: g.Building,
				Address: a.String(), WANAddress: wan.String(), Location: "netns " + ns(g.Name)}, Namespace: ns(g.Name)},
				Dev: "lan0", Port: fmt.Sprintf("g%d", gwN), WANPort: fmt.Sprintf("w%d", gwN), Bridge: br, Prefix: lan.Bits(),
				Via: cloudAddr.String(), Profile: g.Link})
		}
		for _, n := range nodes {
			nodeN++
			a := nth(lan, host)
			host++
			f.All = append(f.All, member{Member: Member{Member: clusters.Member{Name: n.Name, Role: clusters.RoleNode, Site: s.Name, Building: n.Building,
				Gateway: n.Gateway, Address: a.String(), Location: "netns " + ns(n.Name)}, Namespace: ns(n.Name)},
				Dev: "eth0", Port: fmt.Sprintf("n%d", nodeN), Bridge: br, Prefix: lan.Bits(), Via: gwAddr[n.Gateway], Profile: n.Link})
		}
	}
	return f, nil
}
