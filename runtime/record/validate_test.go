package record

import (
	"strings"
	"testing"
)

func TestValidStream(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want string // "" valid
	}{
		{"sales", ""},
		{"telemetry-2.ecu_β", ""},
		{"", "no stream name"},
		{"\xff", "not valid UTF-8"},
		{"\xfe", "not valid UTF-8"},
		{"a/b", "no '/'"},
		{"a\nb", "control"},
		{"a\x7fb", "control"},
		{strings.Repeat("s", MaxStream), ""},
		{strings.Repeat("s", 32750), "at most 200"},
	} {
		err := ValidStream(tc.s)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidStream(%.20q) = %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestRecordCheck(t *testing.T) {
	good := Record{Node: "n1", Epoch: "e1", Stream: "s", Seq: 3, Key: Key("n1", "e1", "s", 3)}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Record){
		"key of another record": func(r *Record) { r.Key = Key("n1", "e1", "s", 4) },
		"seq 0":                 func(r *Record) { r.Seq, r.Key = 0, Key("n1", "e1", "s", 0) },
		"stream with a slash":   func(r *Record) { r.Stream, r.Key = "a/b", Key("n1", "e1", "a/b", 3) },
		"long stream":           func(r *Record) { r.Stream = strings.Repeat("x", 40000); r.Key = Key("n1", "e1", r.Stream, 3) },
	} {
		r := good
		change(&r)
		if err := r.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
