package validators

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/wire"
	"github.com/edgefault/edgefault/scenarios"
)

// DeliveredExactlyOnce: every record a producer on the group's nodes had
// acknowledged (by the sample producer or the local service) is at the
// sink exactly once and in order: per buffer epoch and stream, the sink
// holds 1..last with no gap, nothing out of order, and last covers the
// highest acknowledged sequence number; and where the producer logged the
// content hash of an acknowledged record, the sink holds that content
// under its key, not another (a forged or overwritten record covers the
// sequence number as well as the real one). After the node's last outage the
// buffer must be empty again within `within` (default 1 min).
type DeliveredExactlyOnce struct{}

type streamKey struct{ node, epoch, stream string }

// parseKey splits node/epoch/stream/seq.
func parseKey(k string) (streamKey, uint64, bool) {
	p := strings.Split(k, "/")
	if len(p) < 4 {
		return streamKey{}, 0, false
	}
	seq, err := strconv.ParseUint(p[len(p)-1], 10, 64)
	if err != nil {
		return streamKey{}, 0, false
	}
	return streamKey{p[0], p[1], strings.Join(p[2:len(p)-1], "/")}, seq, true
}

// Validate implements Validator.
func (DeliveredExactlyOnce) Validate(ev *Evidence, x scenarios.Expectation) Verdict {
	v := newVerdict()
	bound := within(x, time.Minute)
	sink := map[streamKey]record.StreamSummary{}
	for _, s := range ev.Streams {
		sink[streamKey{s.Node, s.Epoch, s.Stream}] = s
	}
	for _, m := range ev.members(x.Group) {
		acked := map[streamKey]uint64{}
		lastAck := map[streamKey]wire.Event{}
		n, checked, forged := 0, 0, 0
		for _, e := range ev.events(m.Name, "", time.Time{}, ev.End, "acked") {
			key := fmt.Sprint(e.Fields["key"])
			k, seq, ok := parseKey(key)
			if !ok {
				continue
			}
			n++
			if want, _ := e.Fields["hash"].(string); want != "" && ev.Hashes != nil {
				if got, held := ev.Hashes[key]; held {
					checked++
					if got != want {
						forged++
						if forged <= 3 {
							v.fail("%s: record %s was acknowledged with content %.12s… and the sink holds other content (%.12s…) under its key: forged, or overwritten", m.Name, key, want, got)
							v.quote(e)
						}
					}
				}
			}
			if seq >= acked[k] {
				acked[k], lastAck[k] = seq, e
			}
		}
		if forged > 3 {
			v.fail("%s: %d acknowledged records in all are held at the sink with other content", m.Name, forged)
		}
		if ev.Hashes != nil {
			v.Numbers[m.Name+".contentChecked"] = float64(checked)
			v.Numbers[m.Name+".contentMismatched"] = float64(forged)
		}
		if n == 0 {
			if ev.produces(m) {
				v.fail("%s: a producer runs on it and got no record acknowledged (see its log)", m.Name)
			}
			continue
		}
		var delivered, lost, dups, beyond uint64
		bad := forged > 0
		for k, maxSeq := range acked {
			s, ok := sink[k]
			dups += s.Duplicates
			switch {
			case !ok:
				v.fail("%s: none of the %d acknowledged records of stream %s (buffer epoch %s) reached the sink", m.Name, maxSeq, k.stream, k.epoch)
				lost += maxSeq
				bad = true
				v.quote(lastAck[k])
			case s.Last < maxSeq:
				v.fail("%s: records %d-%d of stream %s (epoch %s) were acknowledged and never delivered (the sink has up to %d)", m.Name, s.Last+1, maxSeq, k.stream, k.epoch, s.Last)
				lost += maxSeq - s.Last
				bad = true
				v.quote(lastAck[k])
				v.mark(m.Name, lastAck[k].Time, "acknowledged, lost", false)
			case len(s.Gaps) > 0 || s.First != 1 || s.Count != s.Last:
				v.fail("%s: stream %s (epoch %s) has holes at the sink: first %d, last %d, %d stored, gaps %v", m.Name, k.stream, k.epoch, s.First, s.Last, s.Count, s.Gaps)
				bad = true
			case s.OutOfOrder > 0:
				v.fail("%s: %d records of stream %s arrived out of order", m.Name, s.OutOfOrder, k.stream)
				bad = true
			case s.Conflicts > 0:
				// The sink holds other content under some of these keys.
				v.fail("%s: %d records of stream %s (epoch %s) conflicted at the sink: it had stored different content under their keys", m.Name, s.Conflicts, k.stream, k.epoch)
				bad = true
			}
			delivered += min(s.Count, maxSeq)
			if s.Last > maxSeq {
				beyond += s.Last - maxSeq
			}
		}
		v.Numbers[m.Name+".acknowledged"] = float64(n)
		v.Numbers[m.Name+".delivered"] = float64(delivered)
		v.Numbers[m.Name+".lost"] = float64(lost)
		v.Numbers[m.Name+".duplicatesRefused"] = float64(dups)
		// A power loss: what was acknowledged must survive it; what was
		// stored but whose acknowledgement died with the power may.
		if offs := ev.events(m.Name, "timeline", time.Time{}, ev.End, "power-off"); len(offs) > 0 {
			v.Numbers[m.Name+".powerLosses"] = float64(len(offs))
			v.Numbers[m.Name+".unacknowledgedDelivered"] = float64(beyond)
			v.mark(m.Name, offs[0].Time, "power loss", lost == 0)
			if lost > 0 {
				v.fail("%s: its power was cut %d× (first at %s) and %d acknowledged records were never delivered: an acknowledgement must mean on disk (fsynced), as durability disk gives", m.Name, len(offs), offs[0].Time.Format("15:04:05.000"), lost)
				v.quote(offs[0])
			} else {
				v.ok("%s: its power was cut %d×: every acknowledged record survived; the sink also holds %d records past the last acknowledged one (stored, their acknowledgement not logged: lost with the power, or the run ended); appends never acknowledged are not the buffer's promise and may be lost", m.Name, len(offs), beyond)
			}
		}
		// Flushed in time: the buffer is empty again after the last outage.
		ws := ev.degraded(m, nil)
		flushed := ""
		if len(ws) > 0 {
			end := ws[len(ws)-1].End
			var empty time.Time
			for _, s := range ev.events(m.Name, "sampler", end, ev.End, "sample") {
				var smp wire.Sample
				if s.Decode(&smp) == nil && smp.Depth != nil && *smp.Depth == 0 {
					empty = s.Time
					v.quote(s)
					break
				}
			}
			switch {
			case empty.IsZero():
				v.fail("%s: the buffer still held records at the end of the run, %.0f s after the restore", m.Name, secs(ev.End.Sub(end)))
				bad = true
			case empty.Sub(end) > bound:
				v.fail("%s: the buffer emptied %.1f s after the restore (bound %v)", m.Name, secs(empty.Sub(end)), bound)
				bad = true
			default:
				v.Numbers[m.Name+".flushSeconds"] = secs(empty.Sub(end))
				v.mark(m.Name, empty, "flushed", true)
				flushed = fmt.Sprintf(", buffer empty %.1f s after the restore", secs(empty.Sub(end)))
			}
		}
		if !bad {
			same := ""
			if checked > 0 {
				same = fmt.Sprintf(", %d with the content acknowledged", checked)
			}
			v.ok("%s: %d acknowledged, all at the sink once and in order%s (%d resends refused as duplicates)%s", m.Name, n, same, dups, flushed)
		}
	}
	return v.done()
}

// produces says whether the scenario runs a producer (produce or serve)
// on m.
func (ev *Evidence) produces(m scenarios.Member) bool {
	if m.Role != "node" {
		return false // workloads run on nodes only
	}
	for _, w := range ev.Scenario.Spec.Workloads {
		if w.Type != scenarios.WorkloadProduce && w.Type != scenarios.WorkloadServe {
			continue
		}
		ms, _ := ev.Scenario.Spec.Resolve(w.On)
		for _, x := range ms {
			if x.Name == m.Name {
				return true
			}
		}
	}
	return false
}
