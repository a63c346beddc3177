package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgefault/edgefault/clusters"
	"github.com/edgefault/edgefault/clusters/existing"
	"github.com/edgefault/edgefault/shaper"
	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/spf13/cobra"
)

type shapeFlags struct {
	fleet, rate, rateDown, rateUp, delay, jitter, loss string
	direction, backend                                 string
	link, peer, provider                               string
	pod, hold                                          string
	to                                                 []string
	outage, clear                                      bool
	seed                                               uint64
}

// impairment validates the flags; it runs before any target is looked up.
func (f *shapeFlags) impairment() (shaper.Impairment, error) {
	var imp shaper.Impairment
	var err error
	if f.rate != "" {
		if imp.Rate, err = shaper.ParseRate(f.rate); err != nil {
			return imp, fmt.Errorf("--rate: %w", err)
		}
	}
	if f.rateDown != "" {
		if imp.DownRate, err = shaper.ParseRate(f.rateDown); err != nil {
			return imp, fmt.Errorf("--rate-down: %w", err)
		}
	}
	if f.rateUp != "" {
		if imp.UpRate, err = shaper.ParseRate(f.rateUp); err != nil {
			return imp, fmt.Errorf("--rate-up: %w", err)
		}
	}
	if f.delay != "" {
		if imp.Delay, err = shaper.ParseDuration("delay", f.delay); err != nil {
			return imp, fmt.Errorf("--delay: %w", err)
		}
	}
	if f.jitter != "" {
		if imp.Jitter, err = shaper.ParseDuration("jitter", f.jitter); err != nil {
			return imp, fmt.Errorf("--jitter: %w", err)
		}
	}
	if f.loss != "" {
		if imp.Loss, err = shaper.ParsePercent(f.loss); err != nil {
			return imp, fmt.Errorf("--loss: %w", err)
		}
	}
	if imp.Direction, err = shaper.ParseDirection(f.direction); err != nil {
		return imp, fmt.Errorf("--direction: %w", err)
	}
	if imp.Targets, err = shaper.ParseTargets(f.to); err != nil {
		return imp, fmt.Errorf("--to: %w", err)
	}
	imp.Outage = f.outage
	imp.Seed = f.seed
	if err := imp.Validate(); err != nil {
		return imp, err
	}
	if f.clear && (!imp.IsZero() || len(imp.Targets) > 0) {
		return imp, fmt.Errorf("--clear removes all shaping from the target: give it alone")
	}
	if !f.clear && imp.IsZero() {
		return imp, fmt.Errorf("nothing to do: give --rate (or --rate-down, --rate-up), --delay, --loss or --outage (or --clear)")
	}
	if _, err := shaper.ParseBackend(f.backend); err != nil {
		return imp, fmt.Errorf("--backend: %w", err)
	}
	if f.peer != "" && f.link == "" {
		return imp, fmt.Errorf("--peer needs --link")
	}
	if f.pod != "" && f.provider != existing.ProviderName {
		return imp, fmt.Errorf("--pod impairs a pod through the node agents of an existing cluster: give --provider existing (on the embedded fleet and kind, shape a pod's veth with --link)")
	}
	return imp, nil
}

// parseLink parses NETNS/DEV (NETNS a name under /run/netns or a path
// such as /proc/PID/ns/net) or a bare DEV in this namespace.
func parseLink(flag, s string) (shaper.Link, error) {
	i := strings.LastIndex(s, "/")
	if i < 0 {
		if s == "" {
			return shaper.Link{}, fmt.Errorf("%s: give NETNS/DEV, e.g. myns/eth0 or /proc/1234/ns/net/eth0", flag)
		}
		return shaper.Link{Name: s}, nil
	}
	if s[i+1:] == "" || s[:i] == "" {
		return shaper.Link{}, fmt.Errorf("%s %q: give NETNS/DEV, e.g. myns/eth0 or /proc/1234/ns/net/eth0", flag, s)
	}
	return shaper.Link{Netns: s[:i], Name: s[i+1:]}, nil
}

// linkTarget is the target given by --link and --peer, outside any fleet.
func (f *shapeFlags) linkTarget() (shaper.Target, error) {
	l, err := parseLink("--link", f.link)
	if err != nil {
		return shaper.Target{}, err
	}
	t := shaper.Target{Link: l}
	if f.peer != "" {
		p, err := parseLink("--peer", f.peer)
		if err != nil {
			return shaper.Target{}, err
		}
		t.Peer = &p
	}
	return t, nil
}

func newShapeCmd(g *globals) *cobra.Command {
	f := &shapeFlags{}
	cmd := &cobra.Command{
		Use:   "shape [--fleet FLEET] TARGET [--rate R | --rate-down R --rate-up R] [--delay D] [--jitter J] [--loss P] [--outage] [--direction egress|ingress|both] [--to CIDR]... | --clear",
		Short: "Impair a gateway's uplink or a node's link, or clear it",
		Long: `shape replaces whatever edgefault had put on the target with the impairment given.

TARGET is a node or gateway name (or its namespace name). A gateway's uplink
carries its whole building or site; a node's link only that node.

Units are explicit: rates in bit, kbit, mbit, gbit (bits/s, any case) or
exactly kB/s, MB/s (bytes/s); mbps, Mb/s and kb/s are refused because tools
disagree on whether they mean bits or bytes. Delays are Go durations (200ms).`,
		Example: `  edgefault shape store-pos --rate 1mbit --delay 200ms --loss 2%
  edgefault shape factory-gw-a --outage
  edgefault shape truck-gw --rate 512kbit --to 100.64.0.1/32
  edgefault shape truck-modem --rate-down 20mbit --rate-up 3mbit --delay 300ms   # a GEO terminal
  edgefault shape store-pos --clear
  edgefault shape --link myns/eth0 --peer veth-host --rate 2mbit   # any veth: a kind node, a pod
  edgefault shape store-pos --outage --for 30s
  edgefault shape --provider existing --kubeconfig lab.yaml truck-ecu --loss 5% --for 2m
  edgefault shape --provider existing --kubeconfig lab.yaml --pod shop/till-0 --rate-down 1mbit`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.link != "" || f.pod != "" {
				if len(args) > 0 {
					return fmt.Errorf("give either a TARGET, --link or --pod, not two")
				}
				return nil
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			imp, err := f.impairment()
			if err != nil {
				return err
			}
			var hold time.Duration
			if f.hold != "" {
				if hold, err = shaper.ParseDuration("--for", f.hold); err != nil {
					return err
				}
				if f.clear {
					return fmt.Errorf("--for holds an impairment, then clears it: not with --clear")
				}
			}
			var t shaper.Target
			if f.link != "" {
				if t, err = f.linkTarget(); err != nil {
					return err
				}
			}
			if err := requireRoot(); err != nil {
				return err
			}
			var sh linkShaper
			name := f.link
			if f.link != "" {
				// Outside any fleet: recorded under the owner "shape", which
				// `edgefault cleanup` restores.
				b, _ := shaper.ParseBackend(f.backend)
				s, err := shaper.New(shaper.WithBackend(b), shaper.WithLogger(g.log))
				if err != nil {
					return err
				}
				sh = bareLink{s, t}
			} else {
				p, err := newProvider(g, f.provider, providerOptions{backend: f.backend})
				if err != nil {
					return err
				}
				var fl clusters.Fleet
				if f.pod != "" {
					name = f.pod
					fl, err = findTarget(cmd.Context(), p, f.fleet, "")
				} else {
					name = args[0]
					fl, err = findTarget(cmd.Context(), p, f.fleet, name)
				}
				if err != nil {
					return err
				}
				if sh, err = fl.LinkShaper(cmd.Context()); err != nil {
					return err
				}
				if es, ok := sh.(*existing.LinkShaper); ok && f.pod != "" {
					sh = podShaper{es}
				}
			}
			defer sh.Close()
			if f.clear {
				if err := sh.Clear(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: shaping cleared\n", name)
				return nil
			}
			if err := sh.Apply(cmd.Context(), name, imp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (backend %s)\n", name, imp, sh.Backend())
			if f.provider == existing.ProviderName && f.pod == "" && len(imp.Targets) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "  held to traffic with the cloud node (the node's path to its API server stays whole); --to widens it")
			}
			// On an existing cluster an impairment lives as long as the
			// harness that holds it: the agents clear it within their
			// lease once this command ends.
			if hold > 0 || f.provider == existing.ProviderName {
				what := "until interrupted"
				var timeout <-chan time.Time
				if hold > 0 {
					what = "for " + hold.String()
					timeout = time.After(hold)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "holding it %s, then clearing it\n", what)
				var lost <-chan struct{}
				if l, ok := sh.(interface{ Lost() <-chan struct{} }); ok {
					lost = l.Lost()
				}
				select {
				case <-cmd.Context().Done():
				case <-timeout:
				case <-lost:
					return fmt.Errorf("%s: the run's lease could not be renewed (the API server unreachable?): the agents clear the impairment on their own", name)
				}
				// Not the command's context: it may be the one that ended.
				cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := sh.Clear(cctx, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: shaping cleared\n", name)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.fleet, "fleet", "", "fleet of the target (default: the one that has it)")
	fleetAlias(cmd)
	providerFlag(cmd, &f.provider)
	fl.StringVar(&f.rate, "rate", "", "rate cap in both directions, e.g. 5mbit, 512kbit, 2MB/s")
	fl.StringVar(&f.rateDown, "rate-down", "", "rate cap of what the target receives (ingress), in place of --rate's")
	fl.StringVar(&f.rateUp, "rate-up", "", "rate cap of what the target sends (egress), in place of --rate's")
	fl.StringVar(&f.delay, "delay", "", "added one-way delay, e.g. 200ms")
	fl.StringVar(&f.jitter, "jitter", "", "delay varies uniformly by ± this much (never reorders)")
	fl.StringVar(&f.loss, "loss", "", "random loss, e.g. 2%")
	fl.Uint64Var(&f.seed, "seed", 0, "draw --loss and --jitter from this seed: the same seed drops the same packets of the same traffic (0: random)")
	fl.BoolVar(&f.outage, "outage", false, "cut the link: nothing passes (TCP connections stall, not reset)")
	fl.StringVar(&f.direction, "direction", "both", "egress (what the target sends), ingress (what it receives) or both")
	fl.StringSliceVar(&f.to, "to", nil, "only impair traffic to/from these CIDRs (repeat or comma-separate)")
	fl.BoolVar(&f.clear, "clear", false, "remove all shaping from the target and restore it")
	fl.StringVar(&f.backend, "backend", "auto", "auto, netem or fallback")
	fl.StringVar(&f.link, "link", "", "shape this link instead of a fleet member: NETNS/DEV (a name listed by ip netns, or /proc/PID/ns/net/DEV)")
	fl.StringVar(&f.pod, "pod", "", "with --provider existing: impair this pod (NAMESPACE/NAME) on the host side of its veth, as it sees its traffic")
	fl.StringVar(&f.hold, "for", "", "hold the impairment this long, then clear it (with --provider existing the command always holds it, until interrupted without --for)")
	fl.StringVar(&f.peer, "peer", "", "the other end of --link (NETNS/DEV, or DEV in this namespace), where its egress is impaired")
	return cmd
}

// linkShaper is what shape needs: a fleet's clusters.LinkShaper, or one
// bare link.
type linkShaper interface {
	Apply(ctx context.Context, member string, imp impair.Impairment) error
	Clear(ctx context.Context, member string) error
	Backend() string
	Close() error
}

// bareLink shapes the one link --link named.
type bareLink struct {
	sh *shaper.Shaper
	t  shaper.Target
}

func (b bareLink) Apply(ctx context.Context, _ string, imp impair.Impairment) error {
	return b.sh.Apply(ctx, b.t, imp)
}
func (b bareLink) Clear(ctx context.Context, _ string) error { return b.sh.Clear(ctx, b.t) }
func (b bareLink) Backend() string                           { return string(b.sh.Backend()) }
func (b bareLink) Close() error                              { b.sh.Close(); return nil }

// podShaper shapes the pod --pod names on an existing cluster.
type podShaper struct{ *existing.LinkShaper }

func (p podShaper) Apply(ctx context.Context, pod string, imp impair.Impairment) error {
	return p.ApplyPod(ctx, pod, imp)
}
func (p podShaper) Clear(ctx context.Context, pod string) error { return p.ClearPod(ctx, pod) }
