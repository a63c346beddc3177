package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/edgetest"
	"github.com/edgefault/edgefault/scenarios"
	"github.com/edgefault/edgefault/validators"
)

// A widely used third-party program certified as the app, unchanged:
// Mosquitto from Debian. Each site's node runs a broker bridged to the
// cloud's broker and a sensor publishing to it; the cloud runs the broker
// and a subscriber. Configured to queue for the cloud (QoS 1, a
// persistent bridge session) it delivers everything across an outage;
// configured as many are (QoS 0, clean sessions) it loses what was
// published while the bridge was down, and delivered quotes the ids.
var _ = Describe("a third-party app (Mosquitto bridged to the cloud)", func() {
	It("passes delivered queueing for the cloud, fails it with the lost ids with a lossy bridge", func(ctx SpecContext) {
		for _, p := range []string{"mosquitto", "mosquitto_pub", "mosquitto_sub"} {
			if _, err := exec.LookPath(p); err != nil {
				Skip(p + " is not installed: make test installs it (apt-get install mosquitto mosquitto-clients)")
			}
		}
		dir := GinkgoT().TempDir()
		Expect(os.Chmod(dir, 0o755)).To(Succeed()) // the apps' users read their scripts here
		file := func(name, text string) string {
			GinkgoHelper()
			p := filepath.Join(dir, name)
			Expect(os.WriteFile(p, []byte(text), 0o755)).To(Succeed())
			return p
		}
		cloudConf := file("cloud.conf", "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
		bridge := file("bridge.sh", bridgeScript)
		sensor := file("sensor.sh", sensorScript)
		subscriber := file("subscriber.sh", subscriberScript)
		sc, err := scenarios.ParseScenario("mqtt.yaml", []byte(fmt.Sprintf(`apiVersion: edgefault.io/v1alpha1
kind: Scenario
metadata: {name: mqtt, description: Mosquitto bridged from two sites to the cloud}
spec:
  timeScale: 20
  topology:
    sites:
    - name: queues
      gateway: {name: queues-gw, uplink: {rate: 20mbit, delay: 20ms}}
      nodes: [queues-1]
    - name: lossy
      gateway: {name: lossy-gw, uplink: {rate: 20mbit, delay: 20ms}}
      nodes: [lossy-1]
  runtime:
    gate: {minDownload: 1mbit}
  workloads:
  - {name: broker, type: command, on: cloud, command: [/usr/sbin/mosquitto, -c, %[1]s], port: 1883, ready: {tcp: true, within: 20s}}
  - {name: subscriber, type: command, on: cloud, command: [/bin/sh, %[2]s]}
  - {name: bridge, type: command, on: queues, command: [/bin/sh, %[3]s, "1", "false"], port: 1883, ready: {tcp: true, within: 20s}}
  - {name: bridge-lossy, type: command, on: lossy, command: [/bin/sh, %[3]s, "0", "true"], port: 1883, ready: {tcp: true, within: 20s}}
  - {name: sensor, type: command, on: all, command: [/bin/sh, %[4]s]}
  timeline:
  - {at: 2m, group: queues-gw, outage: true, for: 8m}
  - {at: 2m, group: lossy-gw, outage: true, for: 8m}
  duration: 16m
  expect:
  # Generous: after the restore the bridge first notices its old session is dead.
  # QoS 1 is at least once: a message whose acknowledgement the outage cut
  # is sent again, so a few duplicates are MQTT's promise kept (the test
  # holds losses to none on its own).
  - {validator: delivered, group: queues, within: 30s, max: 3}
  # Short enough that what it lost is judged lost before the run ends.
  - {validator: delivered, group: lossy, within: 10s}
  - {validator: keeps-running}
`, cloudConf, subscriber, bridge, sensor)))
		Expect(err).NotTo(HaveOccurred())
		res := edgetest.Run(ctx, sc, edgetest.WithOptions(func(o *harness.RunOptions) {
			o.Edgeguard = edgeguard
			o.FleetPrefix = fmt.Sprintf("m%d-", os.Getpid()%1000)
		}))
		Expect(res.Error).To(BeEmpty())
		var queues, lossy validators.Verdict
		for _, v := range res.Verdicts {
			if v.Validator == "delivered" && v.Group == "queues" {
				queues = v
			}
			if v.Validator == "delivered" && v.Group == "lossy" {
				lossy = v
			}
		}
		Expect(queues.Pass).To(BeTrue(), queues.Summary)
		Expect(queues.Numbers["lost"]).To(BeZero(), "the queueing bridge lost messages: %s", queues.Summary)
		Expect(queues.Numbers["late"]).To(BeZero(), queues.Summary)
		Expect(queues.Numbers["sent"]).To(BeNumerically(">", 50), queues.Summary)
		Expect(lossy.Pass).To(BeFalse(), lossy.Summary)
		Expect(lossy.Numbers["lost"]).To(BeNumerically(">", 5), "24 s offline, ~16 of them after the bridge noticed: %s", lossy.Summary)
		Expect(lossy.Summary).To(MatchRegexp(`\d+ lost \(lossy-1-\d+, lossy-1-\d+`), "the lost ids are quoted")
		Expect(res).To(edgetest.PassValidator("keeps-running"))
	})
})

// bridgeScript runs a Mosquitto broker on the node bridged to the cloud's
// ($BROKER_ADDR): $1 is the bridge's QoS, $2 whether its session is
// clean (then nothing is queued for it while it is down).
const bridgeScript = `set -e
cat > "$DATA_DIR/mosquitto.conf" <<EOF
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $DATA_DIR/
log_dest stderr
connection cloud
address $BROKER_ADDR
topic fleet/# out $1
cleansession $2
clientid bridge-$NODE_NAME
keepalive_interval 5
restart_timeout 1
EOF
exec mosquitto -c "$DATA_DIR/mosquitto.conf"
`

// sensorScript publishes a reading five times a second to the node's
// broker (QoS 1: the broker has it when mosquitto_pub returns) and logs
// it sent.
const sensorScript = `i=0
while :; do
  i=$((i+1)); id="$NODE_NAME-$i"
  if mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t "fleet/$NODE_NAME" -m "$id"; then
    printf '{"time":"%s","event":"sent","id":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$id" >> "$APP_EVENTS"
  fi
  sleep 0.2
done
`

// subscriberScript logs every reading the cloud's broker has received.
const subscriberScript = `stdbuf -oL mosquitto_sub -h 127.0.0.1 -q 1 -c -i cloud-sub -t 'fleet/#' | while read -r id; do
  printf '{"time":"%s","event":"received","id":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$id" >> "$APP_EVENTS"
done
`
