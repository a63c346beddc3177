package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/edgefault/edgefault/clusters/netns"
	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/scenarios"
)

// initTmpl is the scenario scenario init writes: one site whose uplink
// is cut twice (once with repeat, as a flapping link is written), the
// user's app on its node, its cloud side in the cloud, and the
// validators that judge any app.
var initTmpl = template.Must(template.New("init").Parse(`# Written by edgefault scenario init: your app on a site whose uplink
# goes away. Edit it, then: edgefault scenario check {{.File}}; edgefault run {{.File}}
# Everything a workload is told and what it may touch: docs/certify-your-app.md
apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata:
  name: {{.Name}}
  description: {{.Name}} keeps working while its site is offline
spec:
  timeScale: 20              # 1 h of timeline in 3 min of real time
  topology:
    sites:
    - name: site
      gateway: {name: site-gw, uplink: {rate: 20mbit, delay: 30ms}}
      nodes: [site-1]
  runtime:
    gate: {minDownload: 1mbit}
  workloads:
{{- if .Cloud}}
  - name: cloud-side
    type: command
    on: cloud
    command: {{.Cloud}}
{{- if .CloudPort}}
    port: {{.CloudPort}}   # the edge side is told CLOUD_SIDE_ADDR
    ready: {tcp: true, within: 30s}
{{- end}}
{{- end}}
  - name: app
    type: command
    on: site
    command: {{.App}}
{{- if .Port}}
    port: {{.Port}}
{{- end}}
  timeline:
  - {at: 10m, group: site-gw, outage: true, for: 10m, note: the uplink is cut}
  - {at: 30m, group: site-gw, outage: true, for: 2m, repeat: 3, every: 5m, note: then it flaps}
  duration: 1h
  expect:
  - {validator: keeps-running}
{{- if .Port}}
  # Probed from the site's LAN: does it keep serving while offline?
  - {validator: endpoint-answers, group: site, workload: app, minShare: 99%}
  # Uncomment if it serves Prometheus metrics, with a series of yours:
  # - {validator: metric, group: site, workload: app, metric: 'my_queue_depth <= 10', phase: after, within: 30s}
{{- end}}
  # If it logs {"event":"sent","id":...} to $APP_EVENTS (and the cloud
  # side logs "received"): everything arrived, once, within a bound.
  - {validator: delivered, group: site, within: 1m}
`))

func newScenarioInitCmd() *cobra.Command {
	var app, cloud, out, name string
	var port, cloudPort int
	cmd := &cobra.Command{
		Use:   "init --app 'COMMAND ARGS...' [--port N] [--cloud 'COMMAND ARGS...' --cloud-port N] [-o FILE]",
		Short: "Write a scenario that certifies your app, to start from",
		Long: `Write a scenario that certifies your app: one site whose uplink is cut and
then flaps, your command on its node (as its own unprivileged user), your
cloud side, if any, in the cloud, and the validators that judge any app
(keeps-running, endpoint-answers with --port, delivered). The scenario is
checked before it is written.

Commands are split on spaces; an argument with spaces needs editing in the
file afterwards.`,
		Example: `  edgefault scenario init --app '/opt/agent/agent --buffer /var/lib' --port 8000 \
    --cloud '/opt/agent/ingest -listen :9000' --cloud-port 9000 -o my-app.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(app) == "" {
				return errors.New("give your app's command: --app '/path/to/app --flag'")
			}
			if cloudPort != 0 && cloud == "" {
				return errors.New("--cloud-port is the port of the --cloud command: give --cloud too")
			}
			if err := scenarios.ValidateName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			argv := func(s string) (string, error) {
				if s == "" {
					return "", nil
				}
				b, err := yaml.Marshal(strings.Fields(s))
				if err != nil {
					return "", err
				}
				// A flow sequence on one line: [a, b].
				var n yaml.Node
				if err := yaml.Unmarshal(b, &n); err != nil {
					return "", err
				}
				n.Content[0].Style = yaml.FlowStyle
				b, err = yaml.Marshal(n.Content[0])
				return strings.TrimSpace(string(b)), err
			}
			a, err := argv(app)
			if err != nil {
				return err
			}
			c, err := argv(cloud)
			if err != nil {
				return err
			}
			file := out
			if file == "" || file == "-" {
				file = name + ".yaml"
			}
			var b bytes.Buffer
			if err := initTmpl.Execute(&b, map[string]any{"Name": name, "File": file, "App": a, "Port": port, "Cloud": c, "CloudPort": cloudPort}); err != nil {
				return err
			}
			sc, err := scenarios.ParseScenario(file, b.Bytes())
			if err != nil {
				return fmt.Errorf("the scenario init would write is not valid (%w): check --port and --cloud-port", err)
			}
			if err := harness.Supports(netns.Info(true), sc); err != nil {
				return err
			}
			if err := harness.CheckTiming(sc, sc.Scale(0)); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			// Never overwrite what the user wrote.
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%s exists: pick another -o, or remove it first", out)
				}
				return err
			}
			if _, err := f.Write(b.Bytes()); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: check it with 'edgefault scenario check %s', run it with 'edgefault run %s'\n", out, out, out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&app, "app", "", "your app's command on the node, with its arguments")
	fl.IntVar(&port, "port", 0, "the port your app listens on, if any (adds endpoint-answers)")
	fl.StringVar(&cloud, "cloud", "", "your app's cloud side, if any, with its arguments")
	fl.IntVar(&cloudPort, "cloud-port", 0, "the port the cloud side listens on (the app is told CLOUD_SIDE_ADDR)")
	fl.StringVarP(&out, "output", "o", "", "write here (never over an existing file) instead of to standard output")
	fl.StringVar(&name, "name", "my-app", "the scenario's name")
	return cmd
}
