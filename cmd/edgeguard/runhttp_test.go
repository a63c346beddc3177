package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
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
	go func() { done <- runHTTP(ctx, g, "127.0.0.1:0", unixSocket{path: sock, mode: 0o660, gid: 4242}, h, nil) }()
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
	// Its owner and group may connect, no one else; the group is the one
	// local producers run with.
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %#o, want 0660", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && ok && st.Gid != 4242 {
		t.Errorf("socket group %d, want 4242", st.Gid)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// A body trickled in a byte at a time is cut off at the read timeout: the
// handler's read fails and the connection closes, instead of holding the
// server (and its body budget) for as long as the client likes.
func TestRunHTTPCutsSlowBodies(t *testing.T) {
	g := &globals{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	})
	done := make(chan error, 1)
	go func() { done <- runHTTPTLS(ctx, g, addr, unixSocket{}, nil, time.Second, h, nil) }()
	var c net.Conn
	for i := 0; i < 50; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := false
	for i := 0; i < 100 && !closed; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write([]byte("x")); err != nil {
			closed = true
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 512)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed = true
		}
	}
	took := time.Since(start)
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("the handler read the whole trickled body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's read was never cut off")
	}
	if !closed || took > 5*time.Second {
		t.Fatalf("connection closed %v after %v; want closed within a few seconds of the 1 s read timeout", closed, took)
	}
	t.Logf("trickled body cut off after %v (read timeout 1 s)", took.Round(10*time.Millisecond))
	cancel()
	<-done
}
