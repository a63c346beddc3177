// Package clusters is edgefault's view of the infrastructure a scenario runs
// on, and the seam between the harness and every provider. A provider (one
// package each under clusters/: netns today, kind and existing clusters
// later) turns a topology into a fleet of sites, nodes and gateways, in the
// words of docs/architecture.md's model, and takes it down again.
//
// What a run needs from a fleet is split into small capabilities, so a
// provider offers what it can and says so in its Info:
//
//   - Shaping: impair a member's link (a gateway's uplink, a node's own link);
//   - Runner: start and exec workloads on a member (a process, or a pod);
//   - Kube: a site's Kubernetes API, as admin or as a member's own identity;
//   - Net: dial and listen on a member over the management path, its
//     traffic counters, its kernel settings;
//   - Evidence: collect what the members wrote into a folder.
//
// The harness, the CLI and harness/edgetest know a provider only through
// this package; docs/providers.md walks through adding one.
package clusters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/shaper/impair"
	"k8s.io/client-go/rest"
)

// Roles of fleet members.
const (
	RoleNode    = "node"
	RoleGateway = "gateway"
	RoleCloud   = "cloud"
)

// CloudName is the cloud member's name in every fleet.
const CloudName = "cloud"

// Labels a member's Node carries, whichever provider made it (or, on a
// cluster the harness did not make, the user put there): its role, site,
// building, its gateway, and the member it plays where that is not the
// Node's own name.
const (
	LabelRole     = "edgefault.io/role"
	LabelSite     = "edgefault.io/site"
	LabelBuilding = "edgefault.io/building"
	LabelGateway  = "edgefault.io/gateway"
	LabelMember   = "edgefault.io/member"
)

// ErrUnsupported is returned (wrapped) by a capability a provider does not
// have; Info says which these are before anything starts.
var ErrUnsupported = errors.New("not supported by this provider")

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
	// Location says where the member lives, in its provider's words (a
	// network namespace, a container, a node): for people, not code.
	Location string `json:"location"`
}

// Info says what a provider can model, so a scenario that needs more is
// refused before anything starts.
type Info struct {
	// Name is the provider's name, as --provider takes it.
	Name string `json:"name"`
	// Commands: workloads may be commands, run as processes on a member.
	Commands bool `json:"commands"`
	// Images: workloads may be container images, run as pods.
	Images bool `json:"images"`
	// Pods: the runtime, the built-in workloads and the cloud's services
	// run as pods from the runtime's image (a user's workload needs
	// Commands or Images).
	Pods bool `json:"pods,omitempty"`
	// Gateways: gateways are members of their own (shaped, able to run
	// commands), and a site may have several (buildings).
	Gateways bool `json:"gateways"`
	// GatewayRuntime: gateways are Nodes of their site and run the
	// runtime (failover needs it); else they are routers only.
	GatewayRuntime bool `json:"gatewayRuntime"`
	// NodeLinks: a node's own link can be impaired, not only its uplink.
	NodeLinks bool `json:"nodeLinks"`
	// GatewayLinks: without gateway members of its own (Gateways false),
	// a gateway's uplink is impaired as the own links of the nodes behind
	// it, as on a cluster whose nodes each have their own uplink.
	GatewayLinks bool `json:"gatewayLinks,omitempty"`
	// ControlPlanes: every site is a Kubernetes cluster the harness can
	// read (validators that judge Node marks need it).
	ControlPlanes bool `json:"controlPlanes"`
	// SiteControlPlanes: each site has a control plane of its own, so a
	// site may go without one (controlPlane: none).
	SiteControlPlanes bool `json:"siteControlPlanes,omitempty"`
	// Disks: a node's data can have a disk of its own that a scenario
	// fills or cuts the power of (the fleet implements Disks).
	Disks bool `json:"disks,omitempty"`
	// Readdress: a gateway's uplink can get a new address (the fleet
	// implements Readdresser).
	Readdress bool `json:"readdress,omitempty"`
	// NameServer: the harness's name server, on the cloud, can tell a
	// site's lookups apart by its gateway's uplink address (dns steps).
	NameServer bool `json:"nameServer,omitempty"`
}

// Readdresser is a fleet whose gateways' uplinks can get a new address, as
// a cellular or CGNAT uplink does when it reconnects.
type Readdresser interface {
	// ChangeAddress gives gateway member's uplink a new address and says
	// the old and the new one.
	ChangeAddress(ctx context.Context, member string) (old, new string, err error)
}

// Disks is a fleet that can give a member's data directory (Paths.Data) a
// small filesystem of its own before its workloads start, fill it to the
// last byte (a node's disk full) and free it again, and cut its power (it
// loses what was not yet written) and boot it again.
type Disks interface {
	// LimitDisk gives member's data directory a filesystem of size bytes.
	LimitDisk(ctx context.Context, member string, size int64) error
	// FillDisk fills it (full) or frees what FillDisk took (not full).
	FillDisk(ctx context.Context, member string, full bool) error
	// CutPower stops the disk at once: what an fsync returned for is kept,
	// what the kernel had not written is lost, and later I/O fails. The
	// caller has stopped the member's processes first.
	CutPower(ctx context.Context, member string) error
	// Boot mounts the disk again once nothing uses it (its journal
	// replayed), as a node's boot does.
	Boot(ctx context.Context, member string) error
}

// Provider creates and removes fleets.
type Provider interface {
	// Name is the provider's name ("netns").
	Name() string
	// Info says what the provider can model.
	Info() Info
	// Up creates fleet name from spec. What it makes is recorded first,
	// so a crash at any point leaves nothing Down (or edgefault cleanup)
	// cannot remove; an Up that fails removes what it made.
	Up(ctx context.Context, name string, spec *scenarios.FleetSpec) (Fleet, error)
	// Get returns a fleet that is up.
	Get(ctx context.Context, name string) (Fleet, error)
	// List names the fleets that are up.
	List(ctx context.Context) ([]string, error)
	// Down removes a fleet and everything recorded for it.
	Down(ctx context.Context, name string) error
}

// Fleet is a running fleet: its members and what the harness may do with
// them.
type Fleet interface {
	Name() string
	// Provider names the provider that made it.
	Provider() string
	// Members lists the cloud, gateways and nodes.
	Members() []Member
	// Member finds a member by name; the error lists the members.
	Member(name string) (Member, error)

	Shaping
	Runner
	Kube
	Net
	Evidence
}

// Shaping impairs members' links.
type Shaping interface {
	// LinkShaper returns a shaper for the fleet's members. Close it when
	// done.
	LinkShaper(ctx context.Context) (LinkShaper, error)
}

// LinkShaper impairs one member's link at a time: a gateway's uplink (the
// whole building or site behind it) or a node's own link. Each Apply
// replaces what was there.
type LinkShaper interface {
	Apply(ctx context.Context, member string, imp impair.Impairment) error
	// Clear removes every impairment from the member's link.
	Clear(ctx context.Context, member string) error
	// Current is the impairment in force on the member's link (ok false:
	// none).
	Current(member string) (imp impair.Impairment, ok bool, err error)
	// Backend says how impairments are applied (for reports).
	Backend() string
	Close() error
}

// Command is a workload to start on a member.
type Command struct {
	// Name labels it (its log file, its evidence): "runtime",
	// "workload-fetch".
	Name string
	// Argv is the command; on a provider that runs images, the command
	// inside Image (empty: the image's own).
	Argv []string
	// Env is added to what the provider gives every workload.
	Env []string
	// Image runs the command in this container image (Info.Images).
	Image string
	// Sandbox, if set, confines a user's command (see Sandbox).
	Sandbox *Sandbox
}

// Sandbox is how a user's command is confined: it runs as UID:GID with no
// capabilities and no way to gain any, with only Command.Env for an
// environment (and a PATH), seeing none of the harness's state (its
// ledger, fleets, evidence, kubeconfigs) but the paths in Writable, which
// the caller created and gave to UID. A provider that cannot confine a
// command this way refuses it (ErrUnsupported) rather than run it as root.
type Sandbox struct {
	UID, GID int
	// Writable are the files and directories it may write (its data
	// directory, its evidence file), at the paths Paths gives.
	Writable []string
	// Dir is its working directory.
	Dir string
	// Hide are directories it must not see beside the provider's own
	// state (the run's reports).
	Hide []string
}

// RuntimePods is a Fleet that runs the runtime as a pod on each node, as
// a cluster does, rather than as a process in the node's namespace. The
// harness asks it for the runtime's image and starts the runtime with
// Command.Image set.
type RuntimePods interface {
	// RuntimeImage makes the runtime's image from the edgeguard binary
	// (once per binary) and returns its reference and the binary's path
	// inside it.
	RuntimeImage(ctx context.Context, edgeguard string) (ref, entry string, err error)
}

// Runner starts workloads on members.
type Runner interface {
	// StartCommand starts c on member in the background; it is recorded
	// so that Down and cleanup stop it even if the caller dies.
	StartCommand(ctx context.Context, member string, c Command) (Process, error)
	// Exec runs argv on member to completion with the given streams (an
	// *exec.ExitError on a non-zero exit, where the provider has one).
	Exec(ctx context.Context, member string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error
	// Paths are where a member's workloads keep evidence and data, as
	// they see them.
	Paths(member string) (Paths, error)
}

// Paths are a member's directories, as its workloads see them.
type Paths struct {
	// Evidence holds the member's event logs (*.jsonl): Collect gathers
	// them.
	Evidence string
	// Data is the member's own durable state (buffers, databases); it
	// survives restarts of its workloads.
	Data string
}

// Process is a workload started by StartCommand.
type Process interface {
	// ID names it for people and evidence ("pid 4242", "pod ns/name").
	ID() string
	// Signal sends sig to it and everything it started: SIGKILL is how a
	// scenario crashes it, SIGTERM how it stops it gracefully.
	Signal(sig syscall.Signal) error
	// Stop stops it (SIGTERM, then SIGKILL after grace) and forgets it.
	Stop(grace time.Duration) error
	// Done is closed when it has exited.
	Done() <-chan struct{}
	// Wait waits for it to exit and returns how it ended.
	Wait(ctx context.Context) error
	// LogPath is where its output is on this machine ("" if nowhere yet:
	// Collect brings it).
	LogPath() string
}

// Kube reaches the sites' Kubernetes clusters.
type Kube interface {
	// SiteConfig is a site's admin client configuration, dialling over
	// the management path.
	SiteConfig(site string) (*rest.Config, error)
	// Kubeconfig is a site's kubeconfig file: the admin's, or with member
	// set that member's own identity (allowed to change only its own
	// Node).
	Kubeconfig(site, member string) ([]byte, error)
	// MemberKubeconfig is the path of member's own kubeconfig as its
	// workloads see it.
	MemberKubeconfig(member string) (string, error)
}

// Net is the management path: how the harness reaches a member without
// going through its shaped link.
type Net interface {
	// Host is member's network seen from inside it: connections and
	// listeners made through it are the member's own.
	Host(member string) (Host, error)
	// Counters are the bytes the member received and sent on its links
	// (loopback excluded).
	Counters(ctx context.Context, member string) (rx, tx int64, err error)
	// Sysctl sets a kernel setting in the member's network namespace
	// (key as under /proc/sys, "net/ipv4/tcp_retries2"); ErrUnsupported
	// where the provider cannot.
	Sysctl(ctx context.Context, member, key, value string) error
}

// Host dials and listens inside one member.
type Host interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Listen(network, addr string) (net.Listener, error)
	ListenPacket(network, addr string) (net.PacketConn, error)
}

// Evidence gathers what members wrote.
type Evidence interface {
	// Collect copies every member's evidence (*.jsonl) into dir/evidence
	// and the logs of the processes it started into dir/logs.
	Collect(ctx context.Context, dir string) error
}

// ValidateFleetName checks a fleet name: it becomes part of namespace,
// container and file names, so it is short and plain.
func ValidateFleetName(name string) error {
	if !fleetNameRE.MatchString(name) {
		return fmt.Errorf("fleet name %q: use 1-24 letters, digits and '-', starting with a letter or digit", name)
	}
	// Other owners in the same ledger: the shaping sessions, the Docker
	// engine, and the clusters made by edgefault kind/k3d create.
	if name == "shape" || name == "docker-engine" || strings.HasPrefix(name, "kind-") || strings.HasPrefix(name, "k3d-") {
		return fmt.Errorf("fleet name %q is reserved (shape, docker-engine, kind-* and k3d-* name other things edgefault makes)", name)
	}
	return nil
}

var fleetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,23}$`)

// MemoryUse is a fleet that can say what memory its processes hold on
// this machine (control planes, helpers, and the runtimes and workloads
// started in it, with their children).
type MemoryUse interface {
	Memory() Memory
}

// Memory is what a fleet's processes hold, in bytes: resident (RSS: the
// pages of a binary they share are counted in each), anonymous (Anon: the
// part of RSS with no file behind it, mostly each one's heap) and their
// proportional share (PSS, which adds up to what they cost the machine).
type Memory struct {
	Processes int    `json:"processes"`
	RSS       uint64 `json:"rssBytes"`
	Anon      uint64 `json:"anonBytes"`
	PSS       uint64 `json:"pssBytes"`
}

// OnCluster is a fleet played by a cluster the harness did not make: it
// says which (the report names it, and the node each member is).
type OnCluster interface {
	// ClusterName names the cluster: its kubeconfig, context and API server.
	ClusterName() string
}

// CloudPorts is a fleet whose cloud's services (the speed-test server,
// the content server, the sink) listen on ports of its choosing, where
// the usual ones (8080-8082) may be taken: a cluster's node already
// serves its own.
type CloudPorts interface {
	CloudPorts() (speed, content, sink int)
}

// SiteComponents is a fleet whose sites each run their own control plane
// (or none): the processes a site runs, empty for none.
type SiteComponents interface {
	SiteComponents(site string) []string
}
