package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/edgefault/edgefault/shaper/impair"
	"github.com/edgefault/edgefault/units"
	"gopkg.in/yaml.v3"
)

// APIVersion is the version of the format this package reads.
const APIVersion = "edgefault.io/v1alpha1"

// Fleet is a topology document (kind: Fleet).
type Fleet struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	Metadata   Metadata  `yaml:"metadata"`
	Spec       FleetSpec `yaml:"spec"`
}

// Metadata names a document.
type Metadata struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
}

// FleetSpec is the topology: the sites of the fleet.
type FleetSpec struct {
	Sites []Site `yaml:"sites"`
}

// Site is one edge location: one cluster with its own LAN. A site either
// lists buildings (a factory: each with its gateway and nodes), or has a
// gateway and nodes of its own (a store, a truck), which is one implicit
// building.
type Site struct {
	Name      string     `yaml:"name"`
	Buildings []Building `yaml:"buildings,omitempty"`
	Gateway   *Gateway   `yaml:"gateway,omitempty"`
	Nodes     []Node     `yaml:"nodes,omitempty"`
	// NodeCount adds nodes named <site>-n1 ... <site>-nN.
	NodeCount int `yaml:"nodeCount,omitempty"`
	// ControlPlane is "none" for a site of network and runtime only, with
	// no Kubernetes API (where the provider gives sites their own); empty:
	// the provider's.
	ControlPlane string `yaml:"controlPlane,omitempty"`
	// Count repeats the site: Count sites, "$n" in its name, its
	// gateway's and its nodes' names replaced by 1...Count (a hundred
	// stores in five lines). Validate expands them.
	Count int `yaml:"count,omitempty"`
}

// CountPlaceholder is what a counted site's names hold for its number.
const CountPlaceholder = "$n"

// maxCount bounds a counted site, as nodeCount is bounded: a typo of
// 100000 would otherwise try to make that many namespaces.
const maxCount = 1000

// ControlPlaneNone is Site.ControlPlane for a site without a Kubernetes API.
const ControlPlaneNone = "none"

// Building is part of a site whose nodes route through one gateway.
type Building struct {
	Name      string  `yaml:"name"`
	Gateway   Gateway `yaml:"gateway"`
	Nodes     []Node  `yaml:"nodes,omitempty"`
	NodeCount int     `yaml:"nodeCount,omitempty"`
}

// Gateway routes a building's LAN to the cloud over its uplink.
type Gateway struct {
	Name   string       `yaml:"name"`
	Uplink *LinkProfile `yaml:"uplink,omitempty"`
}

// Node is a machine at a site.
type Node struct {
	Name string `yaml:"name"`
	// Link is an impairment of the node's own LAN link from the start.
	Link *LinkProfile `yaml:"link,omitempty"`
}

// UnmarshalYAML accepts a node as a bare name or as a mapping.
func (n *Node) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		n.Name = v.Value
		return nil
	}
	type plain Node
	var p plain
	if err := decodeStrict(v, &p); err != nil {
		return err
	}
	*n = Node(p)
	return nil
}

// LinkProfile is a link's condition in the units users type: rate "5mbit"
// (or {down: 20mbit, up: 3mbit}), delay "40ms", jitter "10ms", loss "1%".
type LinkProfile struct {
	Rate   LinkRate `yaml:"rate,omitempty"`
	Delay  string   `yaml:"delay,omitempty"`
	Jitter string   `yaml:"jitter,omitempty"`
	Loss   string   `yaml:"loss,omitempty"`
}

// Impairment converts the profile; field names errors after path.
func (p LinkProfile) Impairment(path string) (impair.Impairment, error) {
	var imp impair.Impairment
	var err error
	if p.Rate.Down == p.Rate.Up && p.Rate.Down != "" {
		if imp.Rate, err = units.ParseRate(p.Rate.Down); err != nil {
			return imp, perr(path+".rate", "%v", err)
		}
	} else {
		if p.Rate.Down != "" {
			if imp.DownRate, err = units.ParseRate(p.Rate.Down); err != nil {
				return imp, perr(path+".rate.down", "%v", err)
			}
		}
		if p.Rate.Up != "" {
			if imp.UpRate, err = units.ParseRate(p.Rate.Up); err != nil {
				return imp, perr(path+".rate.up", "%v", err)
			}
		}
	}
	if p.Delay != "" {
		if imp.Delay, err = units.ParseDuration("delay", p.Delay); err != nil {
			return imp, perr(path+".delay", "%v", err)
		}
	}
	if p.Jitter != "" {
		if imp.Jitter, err = units.ParseDuration("jitter", p.Jitter); err != nil {
			return imp, perr(path+".jitter", "%v", err)
		}
	}
	if p.Loss != "" {
		if imp.Loss, err = units.ParsePercent(p.Loss); err != nil {
			return imp, perr(path+".loss", "%v", err)
		}
	}
	if err := imp.Validate(); err != nil {
		return imp, perr(path, "%v", err)
	}
	return imp, nil
}

// decodeStrict decodes a node refusing unknown fields (yaml.v3 only does
// that through a Decoder, so re-encode the node and decode it again).
func decodeStrict(v *yaml.Node, out any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		// Line numbers here are relative to the node; report its own.
		msg := regexp.MustCompile(`line \d+: `).ReplaceAllString(err.Error(), "")
		return fmt.Errorf("line %d: %s", v.Line, strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  "))
	}
	return nil
}

// Error is a problem in a document, with where it is.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if loc == "" {
		loc = "<input>"
	}
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	return loc + ": " + e.Msg
}

// LoadFleetFile reads a Fleet document from a file.
func LoadFleetFile(path string) (*Fleet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	return ParseFleet(path, b)
}

var lineRE = regexp.MustCompile(`line (\d+): (.*)`)

// ParseFleet parses and validates a Fleet document. file names the source
// in errors.
func ParseFleet(file string, data []byte) (*Fleet, error) {
	var f Fleet
	if err := parse(file, data, &f, "expected apiVersion, kind: Fleet, spec.sites", f.validate); err != nil {
		return nil, err
	}
	return &f, nil
}

// parse decodes a document strictly (unknown fields are errors) into out
// and runs validate on it; every error is an *Error with the file and,
// where it is known, the line. empty says what an empty document lacks.
func parse(file string, data []byte, out any, empty string, validate func() error) error {
	return parseNode(file, data, out, empty, validate, &yaml.Node{})
}

// parseNode is parse keeping the parsed document in root, for errors found
// later (Scenario.Errorf).
func parseNode(file string, data []byte, out any, empty string, validate func() error, root *yaml.Node) error {
	if err := yaml.Unmarshal(data, root); err != nil {
		return yamlError(file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return &Error{File: file, Msg: "empty document: " + empty}
		}
		return yamlError(file, err)
	}
	if err := validate(); err != nil {
		var pe *pathError
		if errors.As(err, &pe) {
			return &Error{File: file, Line: lineOf(root, pe.path), Msg: pe.Error()}
		}
		return &Error{File: file, Msg: err.Error()}
	}
	return nil
}

func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: m[2]}
	}
	return &Error{File: file, Msg: msg}
}

// pathError is a validation error at a field path like
// spec.sites[1].nodes[0].name.
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string { return e.path + ": " + e.msg }

func perr(path, format string, a ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, a...)}
}

var segRE = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)

// lineOf finds the line of the node at path in a parsed document, or of
// the deepest ancestor that exists.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, m := range segRE.FindAllStringSubmatch(path, -1) {
		var next *yaml.Node
		switch {
		case m[1] != "" && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == m[1] {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		case m[2] != "" && n.Kind == yaml.SequenceNode:
			i, _ := strconv.Atoi(m[2])
			if i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return line
		}
		n = next
		if n.Kind != yaml.MappingNode || n.Line > line {
			line = n.Line
		}
	}
	return line
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// ReservedNames may not name a node or gateway: the fleet uses them for
// its own namespaces.
var ReservedNames = map[string]bool{"cloud": true, "fabric": true}

func checkName(path, name string, seen map[string]string) error {
	if name == "" {
		return perr(path, "name is required")
	}
	if !nameRE.MatchString(name) {
		return perr(path, "name %q: use lowercase letters, digits and '-', at most 40 characters, starting and ending with a letter or digit", name)
	}
	if ReservedNames[name] {
		return perr(path, "name %q is reserved for the fleet's own namespaces", name)
	}
	if prev, ok := seen[name]; ok {
		return perr(path, "name %q is already used by %s: names are unique within a fleet", name, prev)
	}
	seen[name] = path
	return nil
}

func (f *Fleet) validate() error {
	if f.APIVersion != APIVersion {
		return perr("apiVersion", "apiVersion %q: this edgefault reads %s", f.APIVersion, APIVersion)
	}
	if f.Kind != "Fleet" {
		return perr("kind", "kind %q: expected Fleet", f.Kind)
	}
	return f.Spec.Validate("spec")
}

// Validate checks the topology and expands its counted sites; path
// prefixes field names in errors.
func (s *FleetSpec) Validate(path string) error {
	if len(s.Sites) == 0 {
		return perr(path+".sites", "a fleet needs at least one site")
	}
	// orig[i] is where site i was written: errors point there.
	orig, err := s.expand(path)
	if err != nil {
		return err
	}
	names := map[string]string{}
	sites := map[string]bool{}
	for i := range s.Sites {
		st := &s.Sites[i]
		sp := fmt.Sprintf("%s.sites[%d]", path, orig[i])
		if st.Name == "" || !nameRE.MatchString(st.Name) {
			return perr(sp+".name", "site name %q: use lowercase letters, digits and '-'", st.Name)
		}
		if sites[st.Name] {
			return perr(sp+".name", "site %q appears twice", st.Name)
		}
		sites[st.Name] = true
		if st.ControlPlane != "" && st.ControlPlane != ControlPlaneNone {
			return perr(sp+".controlPlane", "site %s: controlPlane %q: use none (no Kubernetes API at the site) or leave it out", st.Name, st.ControlPlane)
		}
		if len(st.Buildings) > 0 && (st.Gateway != nil || len(st.Nodes) > 0 || st.NodeCount > 0) {
			return perr(sp, "site %q has buildings: put its gateway and nodes in them, not on the site", st.Name)
		}
		if len(st.Buildings) == 0 {
			if st.Gateway == nil {
				return perr(sp+".gateway", "site %q needs a gateway (or buildings with one each)", st.Name)
			}
			if err := checkGateway(sp+".gateway", st.Gateway, names); err != nil {
				return err
			}
			if err := checkNodes(sp, st.Name, st.Nodes, st.NodeCount, names); err != nil {
				return err
			}
			continue
		}
		bnames := map[string]bool{}
		for j := range st.Buildings {
			b := &st.Buildings[j]
			bp := fmt.Sprintf("%s.buildings[%d]", sp, j)
			if b.Name == "" || !nameRE.MatchString(b.Name) {
				return perr(bp+".name", "building name %q: use lowercase letters, digits and '-'", b.Name)
			}
			if bnames[b.Name] {
				return perr(bp+".name", "building %q appears twice in site %q", b.Name, st.Name)
			}
			bnames[b.Name] = true
			if err := checkGateway(bp+".gateway", &b.Gateway, names); err != nil {
				return err
			}
			if err := checkNodes(bp, st.Name+"-"+b.Name, b.Nodes, b.NodeCount, names); err != nil {
				return err
			}
		}
	}
	return nil
}

// expand replaces each counted site by its Count copies and returns, for
// every site after, the index of the site it was written as.
func (s *FleetSpec) expand(path string) ([]int, error) {
	for i, st := range s.Sites {
		if st.Count == 0 && strings.Contains(st.Name, CountPlaceholder) {
			return nil, perr(fmt.Sprintf("%s.sites[%d].name", path, i), "site name %q holds %s: give the site a count (count: 10) to repeat it", st.Name, CountPlaceholder)
		}
	}
	if !slices.ContainsFunc(s.Sites, func(st Site) bool { return st.Count != 0 }) {
		orig := make([]int, len(s.Sites))
		for i := range orig {
			orig[i] = i
		}
		return orig, nil // nothing to expand: the sites are left as they are
	}
	var out []Site
	var orig []int
	for i, st := range s.Sites {
		if st.Count == 0 {
			out, orig = append(out, st), append(orig, i)
			continue
		}
		sp := fmt.Sprintf("%s.sites[%d]", path, i)
		if st.Count < 0 || st.Count > maxCount {
			return nil, perr(sp+".count", "count %d: use 1 to %d", st.Count, maxCount)
		}
		if len(st.Buildings) > 0 {
			return nil, perr(sp+".count", "site %q: count repeats a site with one gateway and its nodes, not one with buildings", st.Name)
		}
		if st.Gateway == nil {
			return nil, perr(sp+".gateway", "site %q needs a gateway (its name holding %s, e.g. store-%s-router)", st.Name, CountPlaceholder, CountPlaceholder)
		}
		for _, n := range []struct{ at, name string }{{".name", st.Name}, {".gateway.name", st.Gateway.Name}} {
			if !strings.Contains(n.name, CountPlaceholder) {
				return nil, perr(sp+n.at, "%q: a counted site's names hold %s, its number (e.g. store-%s, store-%s-router)", n.name, CountPlaceholder, CountPlaceholder, CountPlaceholder)
			}
		}
		for k, n := range st.Nodes {
			if !strings.Contains(n.Name, CountPlaceholder) {
				return nil, perr(fmt.Sprintf("%s.nodes[%d].name", sp, k), "%q: a counted site's node names hold %s, its number (e.g. store-%s-pos)", n.Name, CountPlaceholder, CountPlaceholder)
			}
		}
		for k := 1; k <= st.Count; k++ {
			sub := func(name string) string { return strings.ReplaceAll(name, CountPlaceholder, strconv.Itoa(k)) }
			c := st
			c.Count = 0
			c.Name = sub(st.Name)
			gw := *st.Gateway
			gw.Name = sub(gw.Name)
			c.Gateway = &gw
			c.Nodes = make([]Node, len(st.Nodes))
			for j, n := range st.Nodes {
				n.Name = sub(n.Name)
				c.Nodes[j] = n
			}
			out, orig = append(out, c), append(orig, i)
		}
	}
	s.Sites = out
	return orig, nil
}

func checkGateway(path string, g *Gateway, names map[string]string) error {
	if err := checkName(path+".name", g.Name, names); err != nil {
		return err
	}
	if g.Uplink != nil {
		if _, err := g.Uplink.Impairment(path + ".uplink"); err != nil {
			return err
		}
	}
	return nil
}

func checkNodes(path, prefix string, nodes []Node, count int, names map[string]string) error {
	if count < 0 || count > 5000 {
		return perr(path+".nodeCount", "nodeCount %d: use 0 to 5000", count)
	}
	for k := range nodes {
		np := fmt.Sprintf("%s.nodes[%d]", path, k)
		if err := checkName(np+".name", nodes[k].Name, names); err != nil {
			return err
		}
		if nodes[k].Link != nil {
			if _, err := nodes[k].Link.Impairment(np + ".link"); err != nil {
				return err
			}
		}
	}
	for _, n := range ExpandNodes(prefix, nil, count) {
		if err := checkName(path+".nodeCount", n.Name, names); err != nil {
			return err
		}
	}
	return nil
}

// ExpandNodes is a site's or building's nodes with nodeCount added: the
// listed ones, then <prefix>-n1 ... <prefix>-nN (prefix is the site, or
// site-building).
func ExpandNodes(prefix string, nodes []Node, count int) []Node {
	out := append([]Node{}, nodes...)
	for k := 1; k <= count; k++ {
		out = append(out, Node{Name: fmt.Sprintf("%s-n%d", prefix, k)})
	}
	return out
}

// DefaultFleet is the built-in topology used when no file is given: a
// store with two nodes, a truck with one, and a factory with two buildings
// of two devices each.
const DefaultFleet = `apiVersion: edgefault.io/v1alpha1
kind: Fleet
metadata:
  name: edgefault
  description: A store, a truck and a factory with two buildings.
spec:
  sites:
  - name: store
    gateway: {name: store-gw, uplink: {rate: 50mbit, delay: 10ms}}
    nodes: [store-pos, store-cam]
  - name: truck
    gateway: {name: truck-gw, uplink: {rate: 20mbit, delay: 40ms}}
    nodes: [truck-1]
  - name: factory
    buildings:
    - name: a
      gateway: {name: factory-gw-a}
      nodes: [factory-a1, factory-a2]
    - name: b
      gateway: {name: factory-gw-b}
      nodes: [factory-b1, factory-b2]
`

// Default returns the built-in topology.
func Default() *Fleet {
	f, err := ParseFleet("built-in", []byte(DefaultFleet))
	if err != nil {
		panic("built-in topology is invalid: " + err.Error())
	}
	return f
}
