package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/clusters/controlplane"
	"github.com/edgefault/edgefault/runtime/buffer"
)

// writeCert issues a certificate for 127.0.0.1 from a private CA (the
// control plane's PKI) and returns the CA's, the certificate's and the
// key's files.
func writeCert(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	p, err := controlplane.NewPKI(dir, "sink-test")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = p.Issue("sink", "sink", nil, []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.CAFile(), cert, key
}

// The sink serves https with --tls-cert/--tls-key; a forwarder given the
// CA (--sink-ca) delivers, one without it refuses the certificate and
// keeps its records.
func TestSinkOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCert(t, dir)
	g := &globals{log: slog.New(slog.DiscardHandler), node: "n1"}
	creds := `{"sites":[{"name":"s","token":"0123456789abcdef0123","members":["n1"]}]}`
	t.Setenv("EDGEGUARD_SINK_CREDENTIALS", creds)
	t.Setenv("EDGEGUARD_SINK_TOKEN", "0123456789abcdef0123")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newSinkCmd(g)
	cmd.SetArgs([]string{"--listen=" + addr, "--db=" + filepath.Join(dir, "sink.db"), "--tls-cert=" + cert, "--tls-key=" + key})
	cmd.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()

	forward := func(caFile string) *buffer.Buffer {
		t.Helper()
		f := &bufferFlags{path: filepath.Join(t.TempDir(), "buf.db"), sink: "https://" + addr, sinkCA: caFile, maxBytes: "1MB", overflow: "block", durability: "disk", share: "80%", maxRecords: 100}
		b, fo, err := f.open(g)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		fo.Link = open{}
		for i := 0; i < 3; i++ {
			if _, err := b.Append(ctx, buffer.Input{Stream: "pos", Payload: []byte(fmt.Sprint("sale ", i))}); err != nil {
				t.Fatal(err)
			}
		}
		go b.Forward(ctx, fo)
		return b
	}
	trusting := forward(ca)
	deadline := time.Now().Add(10 * time.Second)
	for trusting.Stats().Records > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := trusting.Stats(); st.Forwarded != 3 {
		t.Fatalf("with the CA: %+v", st)
	}
	stranger := forward("")
	for stranger.Stats().LastError == "" && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := stranger.Stats(); st.Forwarded != 0 || st.Records != 3 || !strings.Contains(st.LastError, "certificate") {
		t.Errorf("without the CA: %+v", st)
	}
	cancel()
	<-done
}

// open is a link that is always usable.
type open struct{}

func (open) IsOpen() bool             { return true }
func (open) Changed() <-chan struct{} { return nil }
