package scenarios

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtins are the scenarios compiled into the binary, by name: vehicle,
// retail, factory and regional-outage (docs/scenarios.md has their link
// figures and sources).
func Builtins() []string {
	return embeddedNames(builtinFS, "builtin", ".yaml")
}

// embeddedNames are the names of dir's files ending in ext, without it.
func embeddedNames(fsys embed.FS, dir, ext string) []string {
	ents, _ := fsys.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok && !e.IsDir() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// SuiteLabel is the metadata label that keeps a built-in out of certify's
// default set: "scale" marks one sized for a benchmark (a hundred sites),
// "field" the example of faults beyond the link.
const SuiteLabel = "edgefault.io/suite"

// Certified are the built-ins certify plays when given none (make run):
// every one without a suite label.
func Certified() []string {
	var out []string
	for _, n := range Builtins() {
		if s, err := Builtin(n); err == nil && s.Metadata.Labels[SuiteLabel] == "" {
			out = append(out, n)
		}
	}
	return out
}

// Builtin returns the built-in scenario called name.
func Builtin(name string) (*Scenario, error) {
	b, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in scenario %q: the built-ins are %s", name, strings.Join(Builtins(), ", "))
	}
	s, err := ParseScenario("built-in "+name, b)
	if err != nil {
		return nil, err
	}
	s.Source = "built-in"
	return s, nil
}

// BuiltinSource is the YAML of a built-in scenario, to copy and edit.
func BuiltinSource(name string) ([]byte, error) {
	b, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in scenario %q: the built-ins are %s", name, strings.Join(Builtins(), ", "))
	}
	return b, nil
}
