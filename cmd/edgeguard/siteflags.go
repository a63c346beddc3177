package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/edgefault/edgefault/runtime/events"
	"github.com/edgefault/edgefault/runtime/site"
	"github.com/spf13/pflag"
)

// siteFlags say which runtimes share this node's uplink.
type siteFlags struct {
	name, listen, keyFile string
	peers                 []string
}

func (f *siteFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "site", "", "the site this node's uplink belongs to (default: the node alone)")
	fs.StringArrayVar(&f.peers, "site-peer", nil, fmt.Sprintf("another runtime behind the same uplink, host:port (port %d by default), or the LAN's broadcast address; repeat for each", site.DefaultPort))
	fs.StringVar(&f.listen, "site-listen", "", fmt.Sprintf("UDP address to hear the site's runtimes on (default :%d with --site-peer)", site.DefaultPort))
	fs.StringVar(&f.keyFile, "site-key-file", "", "a file holding a key every runtime of the site shares: datagrams are signed with it and others dropped (without it, whoever can send from a peer's address can slow or hold the site's flush, and forge a confirmation that opens a gate whose own probes read good)")
}

func (f *siteFlags) set() bool {
	return f.name != "" || len(f.peers) > 0 || f.listen != "" || f.keyFile != ""
}

// open makes the coordinator (alone when no peers are given) and its event
// log (close it when done).
func (f *siteFlags) open(g *globals) (*site.Coordinator, *events.Log, error) {
	if len(f.peers) == 0 && (f.listen != "" || f.keyFile != "") {
		return nil, nil, fmt.Errorf("--site-listen and --site-key-file are for runtimes that agree with others: give each --site-peer")
	}
	cfg := site.Config{Site: f.name, Node: g.node, Listen: f.listen, Logger: g.log}
	if cfg.Site == "" {
		if len(f.peers) > 0 {
			return nil, nil, fmt.Errorf("--site-peer needs --site: the name every runtime behind the uplink gives")
		}
		cfg.Site = g.node
	}
	for _, p := range f.peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			p = net.JoinHostPort(p, strconv.Itoa(site.DefaultPort))
		}
		cfg.Peers = append(cfg.Peers, p)
	}
	if f.keyFile != "" {
		k, err := os.ReadFile(f.keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--site-key-file: %w", err)
		}
		if cfg.Key = []byte(strings.TrimSpace(string(k))); len(cfg.Key) < 16 {
			return nil, nil, fmt.Errorf("--site-key-file %s: a key of at least 16 characters (openssl rand -hex 32)", f.keyFile)
		}
	}
	cfg.Events = g.openEvents("site")
	c, err := site.New(cfg)
	if err != nil {
		cfg.Events.Close()
		return nil, nil, fmt.Errorf("--site: %w", err)
	}
	return c, cfg.Events, nil
}
