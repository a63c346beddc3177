package controlplane

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// NodeUser is the user name a node's runtime authenticates as: its own
// identity, so RBAC can tell nodes apart.
func NodeUser(node string) string { return "edgefault:node:" + node }

// NodeGroup is the group every node runtime belongs to.
const NodeGroup = "edgefault:nodes"

// NodeConfig issues a client certificate for node's runtime and returns a
// client configuration that uses it.
func (cp *ControlPlane) NodeConfig(node string) (*rest.Config, error) {
	pki, err := cp.pki()
	if err != nil {
		return nil, err
	}
	cert, key, err := pki.Issue("node-"+node, NodeUser(node), []string{NodeGroup}, nil, nil)
	if err != nil {
		return nil, err
	}
	// No Dial: a node's runtime runs inside its node and reaches the API
	// over the site LAN; callers elsewhere set their own.
	return &rest.Config{Host: cp.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: pki.CAFile(), CertFile: cert, KeyFile: key}, Timeout: cp.Admin.Timeout}, nil
}

// GrantNode gives node's runtime what it needs and no more: read and
// change its own Node object (labels, taints, unschedulable), read pods
// and evict them, and write Events, in the site's cluster.
func (cp *ControlPlane) GrantNode(ctx context.Context, node string) error {
	cs, err := cp.Client()
	if err != nil {
		return err
	}
	name := "edgefault:node:" + node
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"edgefault.io/node": node}},
		Rules: []rbacv1.PolicyRule{
			// Its own Node only: resourceNames pins the object.
			{APIGroups: []string{""}, Resources: []string{"nodes"}, ResourceNames: []string{node}, Verbs: []string{"get", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
			{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("role for node %s: %w", node, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"edgefault.io/node": node}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: NodeUser(node)}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding for node %s: %w", node, err)
	}
	return nil
}
