package sink

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/edgefault/edgefault/units"
	"github.com/prometheus/client_golang/prometheus"
)

// Many handlers at once, batches of every size (some larger than the
// burst, some refused): what the bound let in, by the parts' due times,
// never passes the rate and one burst in any window.
func TestAdmissionKeepsItsBoundUnderContention(t *testing.T) {
	ad := newAdmitter(Admission{Rate: 24 * units.Mbit, Concurrency: 8, MaxWait: 500 * time.Millisecond}, newAdmitMetrics(prometheus.NewRegistry()))
	rate, burst := float64(ad.bucket.Limit()), float64(ad.bucket.Burst())
	var mu sync.Mutex
	var parts []part
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
				req.ContentLength = int64(r.IntN(5<<20) + 1000)
				release, ps, no := ad.admit(ctx, req)
				if no != nil {
					time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
					continue
				}
				mu.Lock()
				parts = append(parts, ps...)
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
				release()
			}
		}()
	}
	wg.Wait()
	sort.Slice(parts, func(i, j int) bool { return parts[i].Due.Before(parts[j].Due) })
	const w = 500 * time.Millisecond
	var sum, peak float64
	j := 0
	for _, p := range parts {
		sum += float64(p.Bytes)
		for p.Due.Sub(parts[j].Due) >= w {
			sum -= float64(parts[j].Bytes)
			j++
		}
		peak = max(peak, sum)
	}
	if limit := burst + rate*w.Seconds(); peak > limit*1.001 {
		t.Fatalf("%.0f bytes let in within %s, above the rate and a burst (%.0f); %d parts", peak, w, limit, len(parts))
	}
}
