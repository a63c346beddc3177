package validators

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/edgefault/edgefault/scenarios"
)

// SinkWithinLimit: the cloud's sink admitted no more than its ingest rate
// allows (runtime.sink.ingestRate): its token bucket, replayed over when
// each batch was let in, never lends bytes it did not hold (1% of a burst
// spared for rounding). The most it took in any 2 s is shown beside. It reads the sink's own
// evidence: the bounds it ran with ("admission") and every batch it took
// ("admitted", with its size and when the bound let it in). It also reports what a
// regional reconnect costs: batches refused (429) by bound, the backlog
// that arrived after the last restore (batches holding a record appended
// before it) and how long it took against backlog ÷ ingest rate.
type SinkWithinLimit struct{}

// sinkWindow is the span the limit is checked over: short enough that a
// burst above the rate shows, long enough that the burst allowed is not
// most of it.
const sinkWindow = 2 * time.Second

// bucketSpare is how far below empty a replayed bucket may go before the
// sink counts as over its limit: rounding of the times, a fraction of a
// burst.
const bucketSpare = 0.01

// overdraft replays a token bucket of rate (bytes a second) and burst,
// full at the first take, over takes in time order: the most any take
// found missing, and when.
func overdraft(takes []take, rate, burst float64) (most float64, at time.Time) {
	tokens, last := burst, time.Time{}
	for i, t := range takes {
		if i > 0 {
			tokens = min(burst, tokens+rate*t.at.Sub(last).Seconds())
		}
		last = t.at
		tokens -= t.bytes
		if -tokens > most {
			most, at = -tokens, t.at
		}
	}
	return most, at
}

// take is bytes the sink let in at a time.
type take struct {
	at    time.Time
	bytes float64
}

// windowPeak is the most taken in any sinkWindow (ending at a take), when
// that window began, and the total.
func windowPeak(takes []take) (peak float64, at time.Time, total float64) {
	sort.Slice(takes, func(i, j int) bool { return takes[i].at.Before(takes[j].at) })
	sum, j := 0.0, 0
	for _, t := range takes {
		total += t.bytes
		sum += t.bytes
		for t.at.Sub(takes[j].at) >= sinkWindow {
			sum -= takes[j].bytes
			j++
		}
		if sum > peak {
			peak, at = sum, takes[j].at
		}
	}
	return peak, at, total
}

// Validate implements Validator.
func (SinkWithinLimit) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	var rate, burst float64
	for _, e := range ev.events("cloud", "sink", time.Time{}, ev.End, "admission") {
		rate, _ = num(e.Fields["rateBytesPerSecond"])
		burst, _ = num(e.Fields["burstBytes"])
	}
	adm := ev.events("cloud", "sink", ev.Start, ev.End, "admitted")
	if len(adm) == 0 {
		v.fail("the sink admitted no batch during the run")
		return v.done()
	}
	// Unbounded, it is measured all the same (the figures of a naive
	// baseline), and fails: there is no limit it kept to.
	allowed := math.Inf(1)
	if rate > 0 {
		allowed = rate*sinkWindow.Seconds() + burst
	}
	// When each batch was let in: the bound's own times where the sink
	// gives them, per part of a batch larger than the burst (its event is
	// written when the handler wakes, later on a loaded machine, which
	// would bunch batches the bound kept apart).
	var takes, seen []take
	for _, e := range adm {
		b, _ := num(e.Fields["bytes"])
		seen = append(seen, take{e.Time, b})
		due, _ := e.Fields["due"].([]any)
		sizes, _ := e.Fields["partBytes"].([]any)
		if len(due) == 0 || len(due) != len(sizes) {
			takes = append(takes, take{e.Time, b})
			continue
		}
		for i := range due {
			t := e.Time
			if s, ok := due[i].(string); ok {
				if d, err := time.Parse(time.RFC3339Nano, s); err == nil {
					t = d
				}
			}
			n, _ := num(sizes[i])
			takes = append(takes, take{t, n})
		}
	}
	peak, _, total := windowPeak(takes) // sorts takes
	over, overAt := overdraft(takes, rate, burst)
	// By the events' own times: what the handlers went on to read. Not
	// judged (wake-ups bunch), but shown.
	seenPeak, _, _ := windowPeak(seen)
	v.Numbers["peakObservedBps"] = seenPeak / sinkWindow.Seconds() * 8
	v.Numbers["limitBps"] = rate * 8
	v.Numbers["peakBps"] = peak / sinkWindow.Seconds() * 8 // over the window, burst included
	v.Numbers["admittedBatches"] = float64(len(adm))
	v.Numbers["admittedBytes"] = total
	if rate <= 0 {
		v.fail("the sink ran without an ingest rate (no admission bound in its evidence): set runtime.sink.ingestRate; it took at most %.1f MB in any %s, %.1f MB in all", peak/1e6, sinkWindow, total/1e6)
	} else if over > bucketSpare*burst {
		v.fail("the sink let in %.2f MB more than its bucket held at %s (%.1f Mbit/s and a %.1f MB burst): above its admission limit; it took at most %.1f MB in any %s (rate and burst: %.1f MB)",
			over/1e6, ev.rel(overAt), rate*8/1e6, burst/1e6, peak/1e6, sinkWindow, allowed/1e6)
		v.mark("cloud", overAt, "sink above its ingest rate", false)
	} else {
		v.ok("the sink took at most %.1f MB in any %s (its limit: %.1f MB, %.1f Mbit/s and a %.1f MB burst; its bucket, replayed, never short by more than %.0f bytes); %d batches, %.1f MB in all",
			peak/1e6, sinkWindow, allowed/1e6, rate*8/1e6, burst/1e6, over, len(adm), total/1e6)
	}
	v.Numbers["bucketOverdraftBytes"] = over
	refused := map[string]int{}
	n := 0
	for _, e := range ev.events("cloud", "sink", ev.Start, ev.End, "refused") {
		refused[fmt.Sprint(e.Fields["bound"])]++
		n++
	}
	v.Numbers["refused"] = float64(n)
	if n > 0 {
		v.ok("%d batches refused with 429 and a Retry-After (by bound: %v)", n, refused)
	}
	ev.drain(v, rate, burst)
	return v.done()
}

// drain reports how the backlog of the last outage reached the sink: the
// batches of the nodes that outage cut, received once the first of them
// resumed its flush after the restore and holding a record appended
// before the restore, from the first of them to the last (gates reopening is the
// gate validator's business; this is the sink's pace). A batch that also
// holds records appended since (a store's last backlog batch, or one made
// while it waited out refusals) counts as backlog by the part of its
// oldest-to-newest span before the restore: records are appended at a
// steady pace, and counting it whole would flatter the drain with live
// bytes.
func (ev *Evidence) drain(v *verdict, rate, burst float64) {
	var restore time.Time
	for _, w := range ev.Windows {
		if w.Outage && w.End.After(restore) && !w.End.After(ev.End) {
			restore = w.End
		}
	}
	if restore.IsZero() {
		return
	}
	// The backlog is the cut nodes': a store that never lost its link has
	// records of the moment before the restore in flight at it, and they
	// are no backlog (counting them started the drain's clock seconds
	// before any returning store had reopened).
	cut := map[string]bool{}
	for _, m := range ev.Scenario.Spec.Topology.Members() {
		for _, w := range ev.degraded(m, nil) {
			if w.Outage && !w.End.Before(restore.Add(-time.Minute)) {
				cut[m.Name] = true
			}
		}
	}
	// The drain starts when the first returning store resumes its flush
	// (its gate reopened: the gate validator's business): a batch that
	// spent the outage in flight and arrived at the restore is no pace.
	from := restore
	var resumed time.Time
	for n := range cut {
		for _, e := range ev.events(n, "buffer", restore, ev.End, "flush-resumed") {
			if resumed.IsZero() || e.Time.Before(resumed) {
				resumed = e.Time
			}
			break
		}
	}
	if !resumed.IsZero() {
		from = resumed
	}
	var first, last time.Time
	var backlog float64
	for _, e := range ev.events("cloud", "sink", from, ev.End, "received") {
		s, _ := e.Fields["oldest"].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !t.Before(restore) {
			continue
		}
		// Evidence from before the sink named the node counts whole.
		if n, ok := e.Fields["node"].(string); ok && !cut[n] {
			continue
		}
		if first.IsZero() {
			first = e.Time
		}
		b, _ := num(e.Fields["bytes"])
		backlog += b * backlogPart(t, e.Fields["newest"], restore)
		last = e.Time
	}
	// What the sink spent on resends (records it already had) in that
	// time: busy, but not with the backlog.
	var resent float64
	for _, e := range ev.events("cloud", "sink", first, last, "received") {
		b, _ := num(e.Fields["bytes"])
		recs, _ := num(e.Fields["records"])
		dups, _ := num(e.Fields["duplicates"])
		if recs > 0 {
			resent += b * dups / recs
		}
	}
	if backlog == 0 || !last.After(first) {
		return // nothing, or one batch: no pace to speak of
	}
	drain := last.Sub(first)
	v.Numbers["backlogBytes"] = backlog
	v.Numbers["drainSeconds"] = secs(drain)
	if rate <= 0 {
		v.ok("after the last restore, a %.1f MB backlog arrived in %.1f s, its first batch %.1f s after the restore", backlog/1e6, drain.Seconds(), first.Sub(restore).Seconds())
		return
	}
	ideal := time.Duration(backlog / rate * float64(time.Second))
	v.Numbers["idealDrainSeconds"] = secs(ideal)
	// Live traffic (the stores that never lost their link, and the
	// returning ones' new records) shares the sink with the backlog: how
	// busy the sink was says whether the drain could have been quicker.
	var took float64
	for _, e := range ev.events("cloud", "sink", first, last, "admitted") {
		b, _ := num(e.Fields["bytes"])
		took += b
	}
	busy := took / (rate * max(drain.Seconds(), 1e-3))
	v.Numbers["drainSinkBusy"] = busy
	// No sink drains a backlog quicker than backlog ÷ (rate − live
	// traffic): what it left unused meanwhile is what the drain wasted.
	// Drain ÷ that ideal is 1 + unused ÷ backlog. Resends count as
	// unused, and so does a burst (the bucket may have held one at the
	// start): the figure errs against the sink.
	unused := max(0, rate*drain.Seconds()+burst-(took-resent))
	v.Numbers["drainResentBytes"] = resent
	v.Numbers["drainRatio"] = drain.Seconds() / max(ideal.Seconds(), 1e-3)
	v.Numbers["drainRatioBesideLive"] = 1 + unused/backlog
	v.ok("after the last restore, a %.1f MB backlog arrived in %.1f s (backlog ÷ ingest rate: %.1f s, %.2fx; the sink took %.1f MB in that time, %.0f%% of its rate, so %.2fx of what the capacity live traffic left allowed), its first batch %.1f s after the restore",
		backlog/1e6, drain.Seconds(), ideal.Seconds(), v.Numbers["drainRatio"], took/1e6, 100*busy, v.Numbers["drainRatioBesideLive"], first.Sub(restore).Seconds())
}

// backlogPart is the part of a batch whose records were appended from
// oldest to newest that was appended before restore (1 when newest is
// missing: evidence from before the sink said it).
func backlogPart(oldest time.Time, newest any, restore time.Time) float64 {
	s, _ := newest.(string)
	n, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || n.Before(restore) || !n.After(oldest) {
		return 1
	}
	return float64(restore.Sub(oldest)) / float64(n.Sub(oldest))
}
