// Package deploy holds the Kubernetes manifests that install the edgeguard
// runtime on a cluster: a namespace, a service account without a token and a
// DaemonSet running the gate as a native sidecar beside a sample workload on
// every edge node. `kubectl apply -f deploy/` installs them; docs/deploy.md
// explains the probes, the resources and the privileges.
//
// The same YAML is embedded here so the harness can apply it and tests can
// validate it against a real kube-apiserver.
package deploy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

//go:embed edgeguard.yaml
var edgeguardYAML []byte

//go:embed failover.yaml
var failoverYAML []byte

//go:embed failover-drain.yaml
var drainYAML []byte

// Objects decodes the embedded manifests of edgeguard.yaml, in file order.
// Empty documents are skipped; an error names the document (counted from
// 0) it is about.
func Objects() ([]*unstructured.Unstructured, error) { return decode("edgeguard.yaml", edgeguardYAML) }

// FailoverObjects decodes failover.yaml: the API access failover needs
// where the runtime runs under one ServiceAccount (RBAC, and the admission
// policy that keeps each pod to its own Node).
func FailoverObjects() ([]*unstructured.Unstructured, error) {
	return decode("failover.yaml", failoverYAML)
}

// DrainObjects decodes failover-drain.yaml: what the opt-in drain action
// needs on top of FailoverObjects (evictions, narrowed as far as admission
// can).
func DrainObjects() ([]*unstructured.Unstructured, error) {
	return decode("failover-drain.yaml", drainYAML)
}

func decode(file string, data []byte) ([]*unstructured.Unstructured, error) {
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := d.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		if u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s document %d (%s): missing apiVersion or metadata.name", file, i, u.GetKind())
		}
		objs = append(objs, u)
	}
}
