package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serve answers on its TCP address and on --socket, removes the socket when
// it stops, and replaces a stale socket a killed run left behind.
func TestRunHTTPServesTheUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "edgeguard.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil { // stale
		t.Fatal(err)
	}
	g := &globals{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })
	go func() { done <- runHTTP(ctx, g, "127.0.0.1:0", sock, h, nil) }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var body []byte
	for i := 0; i < 50; i++ {
		resp, err := c.Get("http://edgeguard/v1/records")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(body) != "ok /v1/records" {
		t.Fatalf("over the socket: %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}
