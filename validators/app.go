package validators

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
)

// AppComponent prefixes the component of the events an app wrote about
// itself ("app/<workload>"), so a report and a validator never take them
// for the harness's own.
const AppComponent = "app/"

// App evidence: what a user's app writes about itself to the file its
// APP_EVENTS variable names, one JSON object per line:
//
//	{"time":"2026-12-06T10:00:00.123Z","event":"sent","id":"42"}
//
// time is RFC 3339 (when it happened), event a word, id a string or a
// number, required for "sent" and "received". Other fields are kept.
// Which member and workload wrote it is the harness's to say (the file
// it gave), not the line's.

// maxAppLine bounds one line (an app's evidence is small records).
const maxAppLine = 64 << 10

// ReadAppEvents reads an app's evidence file, written by workload on
// node. Lines that break the contract are not skipped silently: each is
// returned as a problem naming the file and line (at most 20, then a
// count).
func ReadAppEvents(path, node, workload string) ([]wire.Event, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	evs, problems := decodeApp(f, filepath.Base(path), node, workload)
	return evs, problems, nil
}

func decodeApp(r io.Reader, name, node, workload string) (evs []wire.Event, problems []string) {
	br := bufio.NewReaderSize(r, 64<<10)
	bad := 0
	problem := func(line int, format string, a ...any) {
		bad++
		if bad <= 20 {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", name, line, fmt.Sprintf(format, a...)))
		}
	}
	for n := 1; ; n++ {
		raw, err := br.ReadSlice('\n')
		long := false
		for err == bufio.ErrBufferFull {
			// Too long: read past it.
			long = true
			_, err = br.ReadSlice('\n')
		}
		if len(raw) == 0 && err != nil {
			break
		}
		line := bytes.TrimSpace(raw)
		switch {
		case long || len(line) > maxAppLine:
			problem(n, "line longer than %d bytes", maxAppLine)
		case len(line) == 0:
		default:
			if e, why := parseAppLine(line); why != "" {
				problem(n, "%s: %.80q", why, line)
			} else {
				e.Node, e.Component = node, AppComponent+workload
				evs = append(evs, e)
			}
		}
		if err != nil {
			break
		}
	}
	if bad > 20 {
		problems = append(problems, fmt.Sprintf("%s: %d more lines break the evidence contract", name, bad-20))
	}
	return evs, problems
}

// parseAppLine decodes one line, or says why it breaks the contract.
func parseAppLine(line []byte) (wire.Event, string) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return wire.Event{}, "not a JSON object"
	}
	if d.More() {
		return wire.Event{}, "more than one JSON value on the line"
	}
	ev, _ := m["event"].(string)
	if ev == "" || len(ev) > 64 {
		return wire.Event{}, `no "event" (a word such as "sent")`
	}
	ts, _ := m["time"].(string)
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return wire.Event{}, `no RFC 3339 "time" (e.g. $(date -u +%Y-%m-%dT%H:%M:%S.%NZ))`
	}
	e := wire.Event{Time: t, Event: ev, Fields: map[string]any{}}
	for k, v := range m {
		if k == "time" || k == "event" || k == "node" || k == "component" {
			continue
		}
		e.Fields[k] = v
	}
	// The runtime's own event format (what edgeguard's workload clients
	// write) nests its fields: they are the line's fields too.
	if nested, ok := m["fields"].(map[string]any); ok {
		delete(e.Fields, "fields")
		for k, v := range nested {
			if _, taken := e.Fields[k]; !taken {
				e.Fields[k] = v
			}
		}
	}
	if ev == "sent" || ev == "received" {
		id := ""
		switch v := m["id"].(type) {
		case string:
			id = v
		case json.Number:
			id = v.String()
		}
		if id == "" || len(id) > 256 || strings.ContainsAny(id, "\n\r") {
			return wire.Event{}, `a "` + ev + `" line needs an "id" (a string or a number)`
		}
		e.Fields["id"] = id
	}
	return e, ""
}
