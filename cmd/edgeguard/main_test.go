package main

import (
	"os"
	"testing"
)

// TestMain lets a test run this very binary as edgeguard (a real process,
// for what must be measured from outside it, such as its memory under a
// cgroup limit): with EDGEGUARD_TEST_AS_MAIN=1 it is main().
func TestMain(m *testing.M) {
	if os.Getenv("EDGEGUARD_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
