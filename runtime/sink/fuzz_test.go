package sink_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/edgefault/edgefault/runtime/sink"
)

// Any body a forwarder (or anyone with a token) posts is answered with a
// 2xx or 4xx: a malformed batch never makes the sink fail (5xx) or crash,
// and what it stores it can summarise.
func FuzzBatches(f *testing.F) {
	f.Add(batch("n1", 1))
	f.Add([]byte(`{"records":[{"key":"n1/e/s/1","node":"n1","epoch":"e","stream":"s","seq":1,"payload":"aGk="}]}`))
	f.Add([]byte(`{"records":[{"key":"n1/e/\u00ff/1","node":"n1","epoch":"e","stream":"\u00ff","seq":1}]}`))
	f.Add([]byte(`{"records":[{"key":"a/b/c/0","node":"a","epoch":"b","stream":"c","seq":0}]}`))
	f.Add([]byte(`{"records":null}`))
	f.Add([]byte(`[`))
	s, err := sink.Open(filepath.Join(f.TempDir(), "sink.db"), nil, sink.WithoutAuth())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/batches", bytes.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("%d %s for %q", rec.Code, rec.Body, body)
		}
		if _, err := s.Summary(); err != nil {
			t.Fatalf("the summary broke after %q: %v", body, err)
		}
	})
}
