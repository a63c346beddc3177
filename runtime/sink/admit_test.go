package sink_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/units"
)

// The sink's admission refuses what it cannot take within its bounds (by
// its rate before reading a body), says when to come back, and counts it
// in /metrics.
func TestAdmission(t *testing.T) {
	for _, tc := range []struct {
		name  string
		adm   sink.Admission
		bound string
		// burst is how many batches go at once after the first.
		burst int
	}{
		// 16 kB/s with a 512 KiB burst: after the burst, a 100 KiB batch
		// waits ~6 s, beyond MaxWait.
		{name: "rate", adm: sink.Admission{Rate: 128 * units.Kbit, MaxWait: 500 * time.Millisecond}, bound: "rate", burst: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, post := admitting(t, tc.adm)
			// Padding makes a batch large enough for the rate to matter.
			big := bytes.Replace(batch("n1", 2), []byte(`"c2FsZQ=="`), []byte(`"`+strings.Repeat("A", 100<<10)+`"`), 1)
			var refused *http.Response
			for i := 0; i < tc.burst && refused == nil; i++ {
				start := time.Now()
				resp := post(bytes.NewReader(big), int64(len(big)))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("batch %d: %s, want stored or refused", i, resp.Status)
				}
				if resp.StatusCode == http.StatusTooManyRequests {
					refused = resp
					if el := time.Since(start); el > 3*tc.adm.MaxWait+time.Second {
						t.Errorf("refused after %s: a refusal should come within MaxWait (%s)", el, tc.adm.MaxWait)
					}
				}
			}
			if refused == nil {
				t.Fatalf("no 429 in %d batches", tc.burst)
			}
			if ra := refused.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without a usable Retry-After: %q", ra)
			}
			resp, err := srv.Client().Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := `edgeguard_sink_refused_batches_total{bound="` + tc.bound + `"} 1`; !strings.Contains(string(m), want) {
				t.Errorf("metrics lack %s:\n%s", want, m)
			}
		})
	}
}

// A batch whose body is still crossing a slow uplink holds none of the
// sink's concurrency slots: with one slot, a second batch is stored while
// the first trickles in, and the first is stored once it has arrived.
func TestSlowBodyHoldsNoSlot(t *testing.T) {
	_, post := admitting(t, sink.Admission{Concurrency: 1, MaxWait: 200 * time.Millisecond})
	slow := batch("n1", 1)
	pr, pw := io.Pipe()
	first := make(chan *http.Response)
	go func() { first <- post(pr, int64(len(slow))) }()
	pw.Write(slow[:10]) // the first ten bytes, then nothing for a while
	time.Sleep(300 * time.Millisecond)
	second := batch("n2", 1)
	if r := post(bytes.NewReader(second), int64(len(second))); r.Body.Close() != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("a batch beside one still arriving: %s, want stored (a slow body holds no slot)", r.Status)
	}
	pw.Write(slow[10:])
	pw.Close()
	if r := <-first; r.Body.Close() != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("the slow batch: %s", r.Status)
	}
}

// admitting serves a sink with admission adm (no auth) for the test, and
// posts batches of a given Content-Length to it.
func admitting(t *testing.T, adm sink.Admission) (*httptest.Server, func(body io.Reader, n int64) *http.Response) {
	t.Helper()
	s, err := sink.Open(filepath.Join(t.TempDir(), "sink.db"), nil, sink.WithoutAuth(), sink.WithAdmission(adm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, func(body io.Reader, n int64) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/batches", body)
		req.ContentLength = n
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return &http.Response{StatusCode: 0, Status: err.Error(), Body: io.NopCloser(strings.NewReader(""))}
		}
		return resp
	}
}
