package scenarios

import (
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"
)

// LinkRate is a link's rate in the units users type: one value for both
// directions (rate: 5mbit) or each its own (rate: {down: 20mbit, up:
// 3mbit}), because cellular, satellite and DSL links are asymmetric. Down
// is what the link's end receives, up what it sends; a direction left out
// is not capped.
type LinkRate struct {
	Down string `yaml:"down,omitempty" json:"down,omitempty"`
	Up   string `yaml:"up,omitempty" json:"up,omitempty"`
}

// SameRate is one rate for both directions.
func SameRate(r string) LinkRate { return LinkRate{Down: r, Up: r} }

// IsZero reports whether no direction is capped.
func (r LinkRate) IsZero() bool { return r.Down == "" && r.Up == "" }

// String is the rate as a scenario says it: "5mbit", or "20mbit down /
// 3mbit up".
func (r LinkRate) String() string {
	switch {
	case r.Down == r.Up:
		return r.Down
	case r.Up == "":
		return r.Down + " down"
	case r.Down == "":
		return r.Up + " up"
	}
	return r.Down + " down / " + r.Up + " up"
}

// UnmarshalYAML takes a scalar (both directions) or {down, up}.
func (r *LinkRate) UnmarshalYAML(v *yaml.Node) error {
	switch v.Kind {
	case yaml.ScalarNode:
		*r = SameRate(v.Value)
		return nil
	case yaml.MappingNode:
		type plain LinkRate
		var p plain
		if err := decodeStrict(v, &p); err != nil {
			return err
		}
		if p.Down == "" && p.Up == "" {
			return fmt.Errorf("line %d: rate: give down, up or both (e.g. {down: 20mbit, up: 3mbit}), or one value for both directions", v.Line)
		}
		*r = LinkRate(p)
		return nil
	}
	return fmt.Errorf("line %d: rate: expected a rate (5mbit) or {down: 20mbit, up: 3mbit}", v.Line)
}

// MarshalYAML writes one value when both directions share it.
func (r LinkRate) MarshalYAML() (any, error) {
	if r.Down == r.Up {
		return r.Down, nil
	}
	type plain LinkRate
	return plain(r), nil
}

// MarshalJSON writes one value when both directions share it (the shape
// state files had before rates were split).
func (r LinkRate) MarshalJSON() ([]byte, error) {
	if r.Down == r.Up {
		return json.Marshal(r.Down)
	}
	type plain LinkRate
	return json.Marshal(plain(r))
}

// UnmarshalJSON takes a string (both directions) or {down, up}.
func (r *LinkRate) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*r = SameRate(s)
		return nil
	}
	type plain LinkRate
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("rate: expected a string or {down, up}: %w", err)
	}
	*r = LinkRate(p)
	return nil
}
