package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/scenarios"
)

// appFile is an evidence file the harness gave a command workload
// (APP_EVENTS), with who it gave it to: the file's lines are labelled by
// that, not by what they say.
type appFile struct {
	base, member, workload string
}

// appEnv is what every command workload is told, on a node or in the
// cloud: where it is (NODE_NAME), where the cloud and the cloud
// workloads are (CLOUD_ADDR, <NAME>_ADDR), where to write its own
// evidence (APP_EVENTS, in EVIDENCE_DIR) and a data directory of its own
// that outlives its restarts (DATA_DIR).
func (r *run) appEnv(member string, w scenarios.Workload, paths clusters.Paths) ([]string, error) {
	cloud, err := r.f.Member(clusters.CloudName)
	if err != nil {
		return nil, err
	}
	data := path.Join(paths.Data, "app-"+w.Name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("workload %s on %s: its data directory: %w", w.Name, member, err)
	}
	// '.' is in no member's or workload's name: no two pairs share a file.
	base := member + "." + w.Name + appSuffix
	r.apps = append(r.apps, appFile{base: base, member: member, workload: w.Name})
	env := []string{
		"NODE_NAME=" + member,
		"EVIDENCE_DIR=" + paths.Evidence,
		"APP_EVENTS=" + path.Join(paths.Evidence, base),
		"DATA_DIR=" + data,
		"CLOUD_ADDR=" + cloud.Address,
	}
	for _, c := range r.sc.Spec.Workloads {
		if c.OnCloud() && c.Port != 0 {
			env = append(env, scenarios.EnvName(c.Name)+"="+net.JoinHostPort(cloud.Address, strconv.Itoa(c.Port)))
		}
	}
	return env, nil
}

// deployCloudWorkloads starts the scenario's cloud workloads, supervised
// as the edge's are, and waits for each to be ready: the edge side starts
// against a cloud that is there.
func (r *run) deployCloudWorkloads(ctx context.Context) error {
	for _, w := range r.sc.Spec.Workloads {
		if !w.OnCloud() {
			continue
		}
		paths, err := r.f.Paths(clusters.CloudName)
		if err != nil {
			return err
		}
		env, err := r.appEnv(clusters.CloudName, w, paths)
		if err != nil {
			return err
		}
		if err := r.sup.start(ctx, clusters.CloudName, "workload/"+w.Name, w.Command, env...); err != nil {
			return fmt.Errorf("cloud workload %s: %w", w.Name, err)
		}
		if err := r.waitWorkload(ctx, clusters.CloudName, w); err != nil {
			return err
		}
		r.log.Info("cloud workload started", "workload", w.Name, "port", w.Port)
	}
	return nil
}

// waitWorkload waits for w's readiness check on member, if it has one,
// up to its bound, and says what it last saw and where the log is.
func (r *run) waitWorkload(ctx context.Context, member string, w scenarios.Workload) error {
	if w.Ready == nil {
		return nil
	}
	host, err := r.f.Host(member)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(w.Port))
	within := w.Ready.ReadyWithin()
	if w.Ready.HTTP != "" {
		err = waitHTTP(ctx, host, "http://"+addr+w.Ready.HTTP, within)
	} else {
		err = waitUntil(ctx, within, func(ctx context.Context) error {
			c, err := host.DialContext(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("a TCP connection to %s: %w", addr, err)
			}
			return c.Close()
		})
	}
	if err != nil {
		return fmt.Errorf("workload %s on %s not ready within %v (%v); its log: %s", w.Name, member, within, err,
			filepath.Join(r.o.Reports, r.sc.Metadata.Name, "logs", member+"-workload-"+w.Name+".log"))
	}
	return nil
}
