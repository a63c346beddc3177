package shaper

import (
	"time"

	"github.com/edgefault/edgefault/units"
)

// Rate is a data rate in bits per second (see package units).
type Rate = units.Rate

// Common rates.
const (
	Bit  = units.Bit
	Kbit = units.Kbit
	Mbit = units.Mbit
	Gbit = units.Gbit
)

// ParseRate parses a rate with an explicit unit; see units.ParseRate.
func ParseRate(s string) (Rate, error) { return units.ParseRate(s) }

// ParsePercent parses a loss percentage; see units.ParsePercent.
func ParsePercent(s string) (float64, error) { return units.ParsePercent(s) }

// ParseDuration parses a non-negative duration for the named field.
func ParseDuration(field, s string) (time.Duration, error) { return units.ParseDuration(field, s) }
