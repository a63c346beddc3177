package record

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on the names that make up a key. They keep every key far inside
// what the buffer's and the sink's databases can store (bbolt: 32 KiB),
// so a record accepted at the edge can always be stored in the cloud.
const (
	MaxStream = 200
	MaxNode   = 253 // a Kubernetes node name
	MaxEpoch  = 64
)

// ValidStream checks a stream name: 1-200 bytes of UTF-8, no '/' (the
// key's separator) and no control characters. Invalid UTF-8 would be
// rewritten to U+FFFD on its way into JSON, making two names one.
func ValidStream(s string) error { return validName("stream", s, MaxStream) }

// ValidNode checks a node name as ValidStream does a stream's.
func ValidNode(s string) error { return validName("node", s, MaxNode) }

// ValidEpoch checks a buffer epoch as ValidStream does a stream's.
func ValidEpoch(s string) error { return validName("epoch", s, MaxEpoch) }

func validName(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("no %s name", what)
	case len(s) > max:
		return fmt.Errorf("%s name of %d bytes: at most %d", what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s name %q is not valid UTF-8", what, s)
	case strings.Contains(s, "/"):
		return fmt.Errorf("%s name %q: no '/' (it separates the parts of a record's key)", what, s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s name %q: no control characters", what, s)
	}
	return nil
}

// Check checks that a record received from elsewhere can be stored: its
// names are valid and its key is theirs.
func (r *Record) Check() error {
	for _, err := range []error{ValidNode(r.Node), ValidEpoch(r.Epoch), ValidStream(r.Stream)} {
		if err != nil {
			return err
		}
	}
	if r.Seq == 0 {
		return fmt.Errorf("sequence number 0: streams count from 1")
	}
	if r.Key != Key(r.Node, r.Epoch, r.Stream, r.Seq) {
		return fmt.Errorf("key %q does not match node/epoch/stream/seq", r.Key)
	}
	return nil
}
