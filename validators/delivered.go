package validators

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// Delivered judges any app that moves data to the cloud by its own
// evidence (ReadAppEvents): every id the group's nodes logged as "sent"
// was logged "received" somewhere (normally by a cloud workload): none
// lost, none received twice, none late. An id is late when it arrives
// more than `within` (default 1m) after it was sent, not counting the time
// its sender's path to the cloud was cut: an outage that begins before
// the bound runs out moves the bound to the outage's end plus within.
// An id whose bound runs past the end of the run and has not arrived is
// pending, not lost. max tolerates that many lost, duplicated or late ids
// in all (default 0); ordered asks, per sender, that ids first arrive in
// the order they were sent.
type Delivered struct{}

type sentID struct {
	e        wire.Event
	sender   string
	seq      int // order of sending at its sender
	deadline time.Time
}

// Validate implements Validator.
func (Delivered) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	bound := within(x, time.Minute)
	limit := 0
	if x.Max != nil {
		limit = *x.Max
	}
	for i, p := range ev.AppProblems {
		if i == 5 {
			v.fail("and %d more lines of app evidence break the contract", len(ev.AppProblems)-5)
			break
		}
		v.fail("app evidence %s", p)
	}

	members := ev.members(x.Group)
	sent := map[string]*sentID{}
	var order []string
	dupSent := 0
	for _, m := range members {
		outages := ev.degraded(m, nil)
		seq := 0
		for _, e := range ev.appEvents(m.Name, "sent") {
			id, _ := e.Fields["id"].(string)
			if id == "" {
				continue // ReadAppEvents makes every sent line's id a string
			}
			if prev, ok := sent[id]; ok {
				if dupSent++; dupSent <= 3 {
					v.fail("id %s was sent twice (by %s and %s): ids must be unique", id, prev.sender, m.Name)
					v.quote(prev.e, e)
				}
				continue
			}
			seq++
			sent[id] = &sentID{e: e, sender: m.Name, seq: seq, deadline: deadline(e.Time, bound, outages)}
			order = append(order, id)
		}
		v.Numbers[m.Name+".sent"] = float64(seq)
	}
	if len(sent) == 0 {
		v.fail("the group's nodes logged nothing \"sent\" in their APP_EVENTS: is the app writing the evidence contract (docs/certify-your-app.md)?")
		return v.done()
	}

	// First arrival of each id, and how many arrivals.
	first := map[string]wire.Event{}
	count := map[string]int{}
	for _, e := range ev.appEvents("", "received") {
		id, _ := e.Fields["id"].(string)
		if _, ok := sent[id]; !ok {
			continue // another group's, or not from this app
		}
		if count[id] == 0 {
			first[id] = e
		}
		count[id]++
	}

	var lost, pending, dups, late []string
	for _, id := range order {
		s := sent[id]
		switch {
		case count[id] == 0 && s.deadline.After(ev.End):
			pending = append(pending, id)
		case count[id] == 0:
			lost = append(lost, id)
			if len(lost) <= 3 {
				v.quote(s.e)
				v.mark(s.sender, s.e.Time, "lost "+id, false)
			}
		default:
			if count[id] > 1 {
				dups = append(dups, id)
			}
			if r := first[id]; r.Time.After(s.deadline) {
				late = append(late, id)
				if len(late) <= 3 {
					v.quote(s.e, r)
				}
			}
		}
	}
	received := len(order) - len(lost) - len(pending)
	v.Numbers["sent"] = float64(len(order))
	v.Numbers["received"] = float64(received)
	v.Numbers["lost"] = float64(len(lost))
	v.Numbers["duplicated"] = float64(len(dups))
	v.Numbers["late"] = float64(len(late))
	v.Numbers["pending"] = float64(len(pending))

	badIDs := map[string]bool{}
	for _, ids := range [][]string{lost, dups, late} {
		for _, id := range ids {
			badIDs[id] = true
		}
	}
	bad := len(badIDs)
	describe := func(what string, ids []string) string {
		return fmt.Sprintf("%d %s (%s)", len(ids), what, quoteIDs(ids))
	}
	if len(lost) > 0 {
		line := describe("lost", lost) + ": sent, never received"
		if bad > limit {
			v.fail("%s", line)
		} else {
			v.ok("%s, within max %d", line, limit)
		}
	}
	if len(dups) > 0 {
		line := describe("received more than once", dups)
		if bad > limit {
			v.fail("%s", line)
		} else {
			v.ok("%s, within max %d", line, limit)
		}
	}
	if len(late) > 0 {
		line := describe("late", late) + fmt.Sprintf(": received more than %v after sending, outages not counted", bound)
		if bad > limit {
			v.fail("%s", line)
		} else {
			v.ok("%s, within max %d", line, limit)
		}
	}
	if x.Ordered {
		v.ordered(sent, first)
	}
	v.ok("%d of %d ids received (%d pending at the end of the run)", received, len(order), len(pending))
	return v.done()
}

// ordered fails the verdict for each sender whose ids first arrived out
// of their sending order.
func (v *verdict) ordered(sent map[string]*sentID, first map[string]wire.Event) {
	type arrival struct {
		id string
		at time.Time
		s  *sentID
	}
	by := map[string][]arrival{}
	for id, r := range first {
		s := sent[id]
		by[s.sender] = append(by[s.sender], arrival{id, r.Time, s})
	}
	senders := make([]string, 0, len(by))
	for s := range by {
		senders = append(senders, s)
	}
	sort.Strings(senders)
	for _, sender := range senders {
		as := by[sender]
		sort.SliceStable(as, func(i, j int) bool {
			if as[i].at.Equal(as[j].at) {
				return as[i].s.seq < as[j].s.seq
			}
			return as[i].at.Before(as[j].at)
		})
		var out []string
		maxSeq := 0
		var after string
		for _, a := range as {
			if a.s.seq < maxSeq {
				if len(out) == 0 {
					v.quote(first[after], first[a.id])
				}
				out = append(out, a.id)
			} else {
				maxSeq, after = a.s.seq, a.id
			}
		}
		if len(out) > 0 {
			v.fail("%s: %d ids arrived out of the order they were sent (%s)", sender, len(out), quoteIDs(out))
		}
	}
}

// deadline is when an id sent at t must have arrived: bound after t, the
// outages of the sender's path that begin before it runs out not counted.
func deadline(t time.Time, bound time.Duration, outages []Window) time.Time {
	d := t.Add(bound)
	for _, w := range outages {
		if w.End.Before(t) || !w.Start.Before(d) {
			continue
		}
		if end := w.End.Add(bound); end.After(d) {
			d = end
		}
	}
	return d
}

// appEvents lists the app events called name that node's workloads wrote
// (every node's and the cloud's when node is empty), in time order.
func (ev *Evidence) appEvents(node, name string) []wire.Event {
	var out []wire.Event
	for _, e := range ev.Events {
		if strings.HasPrefix(e.Component, AppComponent) && e.Event == name && (node == "" || e.Node == node) {
			out = append(out, e)
		}
	}
	return out
}

// quoteIDs lists up to ten ids.
func quoteIDs(ids []string) string {
	if len(ids) <= 10 {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:10], ", ") + fmt.Sprintf(", and %d more", len(ids)-10)
}
