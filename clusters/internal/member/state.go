package member

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// StateFile is the name of a fleet's state in its directory.
const StateFile = "fleet.json"

// SaveState writes v as the fleet's state in dir (mode 0600: it may hold
// a run's token), whole or not at all.
func SaveState(dir string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, StateFile)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// ListStates names the fleets under root that have a state, sorted.
func ListStates(root string) ([]string, error) {
	des, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range des {
		if _, err := os.Stat(filepath.Join(root, d.Name(), StateFile)); err == nil {
			names = append(names, d.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// ErrNoState is LoadState's error for a fleet that is not up.
var ErrNoState = errors.New("no state: the fleet is not up")

// LoadState reads the fleet's state in dir into v.
func LoadState(dir string, v any) error {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoState
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	return nil
}
