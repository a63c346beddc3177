// Package clusters is edgefault's view of the infrastructure a scenario runs
// on. A provider (one package each: netns, and later kind and existing)
// turns a topology into a fleet of sites, nodes and gateways, in the words
// of DESIGN.md's model, and takes it down again.
package clusters

import (
	"context"

	"github.com/edgefault/edgefault/scenarios"
)

// Roles of fleet members.
const (
	RoleNode    = "node"
	RoleGateway = "gateway"
	RoleCloud   = "cloud"
)

// Member is one machine of a fleet: a node, a gateway or the cloud.
type Member struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Site     string `json:"site,omitempty"`
	Building string `json:"building,omitempty"`
	// Gateway is the gateway a node routes through by default.
	Gateway string `json:"gateway,omitempty"`
	// Address is the member's address on its site LAN (the cloud's: on
	// the WAN).
	Address string `json:"address"`
	// WANAddress is a gateway's uplink address.
	WANAddress string `json:"wanAddress,omitempty"`
	// Namespace is where the member lives (a network namespace name on the
	// embedded fleet).
	Namespace string `json:"namespace"`
}

// Provider creates and removes fleets.
type Provider interface {
	// Name is the provider's name ("netns").
	Name() string
	// Up creates fleet name from spec.
	Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (Fleet, error)
	// Get returns a fleet that is up.
	Get(ctx context.Context, name string) (Fleet, error)
	// List names the fleets that are up.
	List(ctx context.Context) ([]string, error)
	// Down removes a fleet and everything recorded for it.
	Down(ctx context.Context, name string) error
}

// Fleet is a running fleet.
type Fleet interface {
	Name() string
	// Members lists the cloud, gateways and nodes.
	Members() []Member
	// Member finds a member by name (or namespace name).
	Member(name string) (Member, error)
}
