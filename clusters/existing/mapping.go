// Package existing is the provider of clusters the harness did not make:
// k3s on devices, a lab of Raspberry Pis, a cloud cluster. Their nodes
// become a scenario's members through labels, and nothing is created on
// them but what the harness deploys (the node agent, its RBAC, the run's
// Lease, ConfigMap and Secret), all of it removed at the end.
//
// This file maps nodes to members; the agent that shapes them is
// runtime/agent.
package existing

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ProviderName is --provider's name for it.
const ProviderName = "existing"

// A node plays a member through the seam's labels (clusters.LabelRole,
// ...): role (node, gateway or cloud) and site are required, member
// defaults to the node's name, building to none.

// Mapped is one node of the cluster and the member it plays ("" when it
// has no role label: the harness leaves it alone).
type Mapped struct {
	Node     string `json:"node"`
	Member   string `json:"member,omitempty"`
	Role     string `json:"role,omitempty"`
	Site     string `json:"site,omitempty"`
	Building string `json:"building,omitempty"`
	// Problem says why a labelled node cannot be a member.
	Problem string `json:"problem,omitempty"`
}

// Map reads the cluster's nodes and their labels, sorted by node name.
func Map(ctx context.Context, cs kubernetes.Interface) ([]Mapped, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the cluster's nodes: %w (the kubeconfig's user needs get and list on nodes)", err)
	}
	out := make([]Mapped, 0, len(nodes.Items))
	seen := map[string]string{}
	for _, n := range nodes.Items {
		m := mapNode(n)
		if m.Member != "" && m.Problem == "" {
			if other, dup := seen[m.Member]; dup {
				m.Problem = fmt.Sprintf("node %s plays member %s too: give one of them another %s", other, m.Member, clusters.LabelMember)
			}
			seen[m.Member] = n.Name
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

func mapNode(n corev1.Node) Mapped {
	l := n.Labels
	m := Mapped{Node: n.Name, Role: l[clusters.LabelRole]}
	if m.Role == "" {
		return m
	}
	m.Member, m.Site, m.Building = l[clusters.LabelMember], l[clusters.LabelSite], l[clusters.LabelBuilding]
	if m.Member == "" {
		m.Member = n.Name
	}
	switch {
	case m.Role != clusters.RoleNode && m.Role != clusters.RoleGateway && m.Role != clusters.RoleCloud:
		m.Problem = fmt.Sprintf("%s=%q: use node, gateway or cloud", clusters.LabelRole, m.Role)
	case m.Role == clusters.RoleCloud && m.Member != clusters.CloudName:
		m.Problem = fmt.Sprintf("the cloud is member %q (%s=%s or no %s label)", clusters.CloudName, clusters.LabelMember, clusters.CloudName, clusters.LabelMember)
	case m.Role != clusters.RoleCloud && m.Site == "":
		m.Problem = fmt.Sprintf("a %s needs %s", m.Role, clusters.LabelSite)
	}
	if m.Problem == "" {
		if err := scenarios.ValidateName(m.Member); err != nil {
			m.Problem = fmt.Sprintf("member name from %s: %v", clusters.LabelMember, err)
		}
	}
	return m
}

// Check says whether the mapped nodes can play the topology: every node
// of it is a labelled node of the same site and building, and a cloud
// node is there (it runs the cloud's services and is never shaped).
// The error lists every mismatch and how to label the node.
func Check(mapped []Mapped, spec *scenarios.FleetSpec) error {
	by := map[string]Mapped{}
	var problems []string
	cloud := false
	for _, m := range mapped {
		if m.Problem != "" {
			problems = append(problems, fmt.Sprintf("node %s: %s", m.Node, m.Problem))
			continue
		}
		if m.Member != "" {
			by[m.Member] = m
		}
		cloud = cloud || m.Role == clusters.RoleCloud
	}
	if !cloud {
		problems = append(problems, fmt.Sprintf("no node is the cloud: label one that is not shaped %s=cloud", clusters.LabelRole))
	}
	for _, want := range spec.Members() {
		if want.Role == clusters.RoleGateway {
			// A cluster's nodes are not routed through one another:
			// each node's own link is its site's uplink here.
			continue
		}
		got, ok := by[want.Name]
		switch {
		case !ok:
			hint := fmt.Sprintf("%s=%s %s=%s", clusters.LabelRole, want.Role, clusters.LabelSite, want.Site)
			if want.Building != "" {
				hint += fmt.Sprintf(" %s=%s", clusters.LabelBuilding, want.Building)
			}
			problems = append(problems, fmt.Sprintf("member %s: no node plays it: label one (kubectl label node NODE %s %s=%s)", want.Name, hint, clusters.LabelMember, want.Name))
		case got.Role != want.Role || got.Site != want.Site || got.Building != want.Building:
			problems = append(problems, fmt.Sprintf("member %s: node %s is labelled %s in site %q building %q, the topology wants a %s in site %q building %q",
				want.Name, got.Node, got.Role, got.Site, got.Building, want.Role, want.Site, want.Building))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the cluster cannot play this topology:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
