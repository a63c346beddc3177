package serve_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/serve"
	"github.com/edgefault/edgefault/units"
)

func TestRecordsEndpoint(t *testing.T) {
	g, err := gate.New(gate.Config{Server: "http://127.0.0.1:1", MinDownload: units.Mbit})
	if err != nil {
		t.Fatal(err)
	}
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "n", MaxRecords: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := httptest.NewServer(serve.Handler(g, serve.WithBuffer(b)))
	defer srv.Close()
	post := func(path, body string) (int, string) {
		resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
		seqs             []uint64
		contains         string
	}{
		{"one", "/v1/records", `{"stream":"pos","payload":"aGk="}`, 200, []uint64{1}, ""},
		{"array", "/v1/records", `[{"stream":"pos","payload":"aGk="},{"stream":"t","payload":""}]`, 200, []uint64{2, 1}, ""},
		{"raw", "/v1/records?stream=pos", `sale #3`, 200, []uint64{3}, ""},
		{"no stream", "/v1/records", `{"payload":"aGk="}`, 400, nil, "no stream name"},
		// Two invalid names JSON would both turn into U+FFFD: one key.
		{"stream not UTF-8", "/v1/records?stream=%FF", `sale`, 400, nil, "not valid UTF-8"},
		{"another stream not UTF-8", "/v1/records?stream=%FE", `sale`, 400, nil, "not valid UTF-8"},
		{"stream with a slash", "/v1/records", `{"stream":"pos/1"}`, 400, nil, "no '/'"},
		// Fits the buffer's database key, not the sink's: never accepted.
		{"stream too long", "/v1/records?stream=" + strings.Repeat("s", 32750), `sale`, 400, nil, "at most 200"},
		{"not json", "/v1/records", `sale`, 400, nil, "want {"},
		{"empty", "/v1/records", `[]`, 400, nil, "nothing to append"},
		{"too large", "/v1/records", `[{"stream":"a"},{"stream":"a"},{"stream":"a"},{"stream":"a"},{"stream":"a"}]`, 413, nil, "split it"},
		{"full", "/v1/records", `[{"stream":"pos"},{"stream":"pos"}]`, 507, nil, "buffer full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("%d %s", code, body)
			}
			if tc.seqs == nil {
				return
			}
			var out struct{ Receipts []buffer.Receipt }
			if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Receipts) != len(tc.seqs) {
				t.Fatalf("receipts %s: %v", body, err)
			}
			for i, r := range out.Receipts {
				if r.Seq != tc.seqs[i] || r.Key == "" {
					t.Fatalf("receipt %d: %+v, want seq %d", i, r, tc.seqs[i])
				}
			}
		})
	}
	resp, err := srv.Client().Get(srv.URL + "/v1/buffer")
	if err != nil {
		t.Fatal(err)
	}
	var st buffer.Stats
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Records != 4 || st.Appended != 4 {
		t.Fatalf("buffer stats %+v", st)
	}
	resp, _ = srv.Client().Get(srv.URL + "/metrics")
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "edgeguard_buffer_records 4") {
		t.Fatalf("metrics lack the buffer:\n%s", m)
	}
}

// A bad record is refused alone, before it is grouped: appends committed
// with it in the same group are not failed with it.
func TestBadAppendFailsOnlyItself(t *testing.T) {
	g, err := gate.New(gate.Config{Server: "http://127.0.0.1:1", MinDownload: units.Mbit})
	if err != nil {
		t.Fatal(err)
	}
	b, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := httptest.NewServer(serve.Handler(g, serve.WithBuffer(b)))
	defer srv.Close()
	const n = 440
	const good = n - n/10 // every tenth is bad
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := "pos"
			if i%10 == 0 {
				stream = strings.Repeat("x", 33000) // bad: refused
			}
			resp, err := srv.Client().Post(srv.URL+"/v1/records?stream="+stream, "text/plain", strings.NewReader("sale"))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			if stream == "pos" {
				codes <- resp.StatusCode
			} else if resp.StatusCode != http.StatusBadRequest {
				codes <- -resp.StatusCode
			}
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == http.StatusOK {
			ok++
		} else {
			t.Errorf("answer %d", c)
		}
	}
	if ok != good || b.Stats().Appended != good {
		t.Errorf("%d of %d good appends answered 200, %d appended", ok, good, b.Stats().Appended)
	}
}

// serve listens on the node's address (the kubelet probes it there), but
// takes records only from the node itself: loopback or the Unix socket.
func TestRecordsOnlyFromThisNode(t *testing.T) {
	g, err := gate.New(gate.Config{Server: "http://127.0.0.1:1", MinDownload: units.Mbit})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := buffer.Open(filepath.Join(dir, "buf.db"), buffer.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := serve.Handler(g, serve.WithBuffer(b))

	// From the LAN (as a request from another machine arrives).
	req := httptest.NewRequest(http.MethodPost, "/v1/records?stream=pos", strings.NewReader("forged sale"))
	req.RemoteAddr = "10.0.1.7:40000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("from the LAN: %d %s, want 403", rec.Code, rec.Body)
	}
	// The gate's status stays readable from there.
	req = httptest.NewRequest(http.MethodGet, "/v1/gate", nil)
	req.RemoteAddr = "10.0.1.7:40000"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("gate status from the LAN: %d", rec.Code)
	}

	// Over the Unix socket.
	sock := filepath.Join(dir, "edgeguard.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Post("http://edgeguard/v1/records?stream=pos", "text/plain", strings.NewReader("sale"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("over the socket: %s", resp.Status)
	}
	if got := b.Stats().Appended; got != 1 {
		t.Errorf("%d appended, want only the socket's", got)
	}
}
