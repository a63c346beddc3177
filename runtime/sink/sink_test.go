package sink_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefault/edgefault/runtime/record"
	"github.com/edgefault/edgefault/runtime/sink"
)

const (
	storeToken  = "store-0123456789abcdef"
	truckToken  = "truck-0123456789abcdef"
	readerToken = "reader-0123456789abcdef"
)

func batch(node string, seq uint64) []byte {
	b, _ := json.Marshal(record.Batch{Records: []record.Record{{Key: record.Key(node, "e1", "pos", seq), Node: node, Epoch: "e1", Stream: "pos", Seq: seq, Payload: []byte("sale")}}})
	return b
}

// Only a credited site delivers, and only its own members' records.
func TestSinkAuthenticatesForwarders(t *testing.T) {
	c, err := sink.ParseCredentials([]byte(`{"sites":[{"name":"store","token":"` + storeToken + `","members":["store-pos"]},{"name":"truck","token":"` + truckToken + `","members":["truck-ecu"]}],"readers":["` + readerToken + `"]}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Open(filepath.Join(t.TempDir(), "sink.db"), nil, sink.WithCredentials(c))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	// do sends one request with the token (none if empty) and returns the
	// status and body.
	do := func(method, path, token string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	post := func(token string, body []byte) (int, string) { return do(http.MethodPost, "/v1/batches", token, body) }
	for _, tc := range []struct {
		name, token string
		body        []byte
		code        int
		says        string
	}{
		{"no token", "", batch("store-pos", 1), 401, "no bearer token"},
		{"unknown token", "guess-0123456789abcdef", batch("store-pos", 1), 401, "unknown token"},
		{"another site's node", truckToken, batch("store-pos", 1), 403, `may not deliver records of node "store-pos"`},
		{"its own node", storeToken, batch("store-pos", 1), 200, `"stored":1`},
		{"its own node again", storeToken, batch("store-pos", 1), 200, `"duplicates":1`},
		{"not JSON, from a stranger", "", []byte("x"), 401, "no bearer token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(tc.token, tc.body)
			if code != tc.code || !strings.Contains(body, tc.says) {
				t.Errorf("%d %s, want %d %q", code, body, tc.code, tc.says)
			}
		})
	}
	sum, _ := s.Summary()
	if len(sum) != 1 || sum[0].Count != 1 {
		t.Errorf("summary %+v", sum)
	}
	// The summary shows epochs and sequence numbers, what a forger needs:
	// a reader sees all, a site its own members', a stranger nothing.
	read := func(token string) (int, []record.StreamSummary) {
		code, body := do(http.MethodGet, "/v1/streams", token, nil)
		var out []record.StreamSummary
		_ = json.Unmarshal([]byte(body), &out)
		return code, out
	}
	if code, _ := read(""); code != http.StatusUnauthorized {
		t.Errorf("summary without a token: %d", code)
	}
	if code, out := read(readerToken); code != 200 || len(out) != 1 {
		t.Errorf("summary for the reader: %d %+v", code, out)
	}
	if code, out := read(storeToken); code != 200 || len(out) != 1 || out[0].Node != "store-pos" {
		t.Errorf("summary for the store: %d %+v", code, out)
	}
	if code, out := read(truckToken); code != 200 || len(out) != 0 {
		t.Errorf("summary for the truck: %d %+v, want none of the store's", code, out)
	}
	// What the sink holds under each key: the same rule.
	_, out := read(readerToken)
	hashes := func(token, query string) (int, string) { return do(http.MethodGet, "/v1/hashes?"+query, token, nil) }
	q := "node=store-pos&epoch=" + out[0].Epoch + "&stream=" + out[0].Stream
	for _, tc := range []struct {
		name, token, query string
		code               int
		says               string
	}{
		{"stranger", "", q, 401, "no bearer token"},
		{"another site", truckToken, q, 403, `may not read node "store-pos"`},
		{"its own site", storeToken, q, 200, `"seq":1,"hash":"`},
		{"reader", readerToken, q, 200, `"seq":1,"hash":"`},
		{"past the end", readerToken, q + "&after=1", 200, `{"hashes":[]}`},
		{"last possible seq", readerToken, q + "&after=18446744073709551615", 200, `{"hashes":[]}`},
		{"bad after", readerToken, q + "&after=-1", 400, "not a sequence number"},
		{"no stream", readerToken, "node=store-pos", 400, "give node, epoch and stream"},
	} {
		t.Run("hashes/"+tc.name, func(t *testing.T) {
			code, body := hashes(tc.token, tc.query)
			if code != tc.code || !strings.Contains(body, tc.says) {
				t.Errorf("%d %s, want %d %q", code, body, tc.code, tc.says)
			}
		})
	}
}

func TestCredentialsAreChecked(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{}`, "no sites"},
		{`{"sites":[{"name":"s","token":"short","members":["n"]}]}`, "at least 16"},
		{`{"sites":[{"name":"s","token":"0123456789abcdef","members":[]}]}`, "no members"},
		{`{"sites":[{"name":"a","token":"0123456789abcdef","members":["n"]},{"name":"b","token":"0123456789abcdef","members":["m"]}]}`, "share a token"},
		{`{"sites":[{"name":"s","token":"0123456789abcdef","members":["a/b"]}]}`, "no '/'"},
		{`{"sites":[],"admin":true}`, "unknown field"},
	} {
		if _, err := sink.ParseCredentials([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
	if _, err := sink.Open(filepath.Join(t.TempDir(), "s.db"), nil); err == nil {
		t.Error("a sink opened without credentials or WithoutAuth")
	}
}
