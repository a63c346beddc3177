package serve_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/serve"
	"github.com/edgefault/edgefault/units"
)

// Any body or stream name a producer posts is answered 200 or 4xx/507:
// never a 5xx (which says "retry, nothing was stored") for input that can
// never be stored, never a crash.
func FuzzRecords(f *testing.F) {
	f.Add("", []byte(`{"stream":"pos","payload":"aGk="}`))
	f.Add("", []byte(`[{"stream":"pos"},{"stream":"t","meta":{"a":"b"}}]`))
	f.Add("pos", []byte("sale"))
	f.Add("\xff", []byte("sale"))
	f.Add("a/b", []byte(""))
	f.Add("", []byte(`{"stream":"\u0000"}`))
	g, err := gate.New(gate.Config{Server: "http://127.0.0.1:1", MinDownload: units.Mbit})
	if err != nil {
		f.Fatal(err)
	}
	// In memory: the fuzzer appends many thousands of records.
	b, err := buffer.Open("", buffer.Options{Node: "n", Durability: buffer.Memory, Overflow: buffer.DropOldest, MaxRecords: 1000})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	h := serve.Handler(g, serve.WithBuffer(b))
	f.Fuzz(func(t *testing.T, stream string, body []byte) {
		target := "/v1/records"
		if stream != "" {
			target += "?stream=" + url.QueryEscape(stream)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:5000"
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusInsufficientStorage {
			t.Fatalf("%d %s for stream %q body %q", rec.Code, rec.Body, stream, body)
		}
	})
}
