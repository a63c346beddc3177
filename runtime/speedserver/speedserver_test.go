package speedserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefault/edgefault/runtime/events"
)

func TestEndpoints(t *testing.T) {
	evPath := filepath.Join(t.TempDir(), "ev.jsonl")
	ev, err := events.Open(evPath, "cloud", "speedserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(ev)
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := srv.Client()
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	if resp, b := get("/speedtest/latency.txt"); resp.StatusCode != 200 || string(b) != "test=test\n" {
		t.Fatalf("latency.txt: %s %q", resp.Status, b)
	}
	resp, b := get("/speedtest/random350x350.jpg")
	if resp.StatusCode != 200 || len(b) != 350*350*2 {
		t.Fatalf("random350x350: %s %d bytes", resp.Status, len(b))
	}
	resp, part := get("/speedtest/random4000x4000.jpg", "Range", "bytes=0-99999")
	if resp.StatusCode != http.StatusPartialContent || len(part) != 100000 {
		t.Fatalf("range: %s %d bytes", resp.Status, len(part))
	}
	if !bytes.Equal(part[:1000], b[:1000]) {
		t.Fatal("the same offsets serve different bytes")
	}
	if resp, _ := get("/speedtest/random5000x5000.jpg"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversize: %s", resp.Status)
	}
	if resp, _ := get("/speedtest/other.txt"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %s", resp.Status)
	}
	up, err := c.Post(srv.URL+"/speedtest/upload.php", "application/octet-stream", strings.NewReader(strings.Repeat("x", 12345)))
	if err != nil {
		t.Fatal(err)
	}
	ub, _ := io.ReadAll(up.Body)
	up.Body.Close()
	if string(ub) != "size=12345" {
		t.Fatalf("upload answered %q", ub)
	}
	st := s.Stats()
	if st.BytesReceived != 12345 || st.BytesSent < 350*350*2+100000 || st.Requests != 6 {
		t.Fatalf("stats %+v", st)
	}
	ev.Close() // flush
	evs, err := events.Read(evPath)
	if err != nil || len(evs) != 3 {
		t.Fatalf("events %v %v: want 2 served + 1 received", evs, err)
	}
	if evs[1].Fields["range"] != "bytes=0-99999" || evs[1].Fields["bytes"] != float64(100000) || evs[1].Node != "cloud" {
		t.Fatalf("served event %+v", evs[1])
	}
}
