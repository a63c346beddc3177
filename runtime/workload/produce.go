package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/events"
)

// Produce is the sample producer: it appends a record to a stream of the
// local edgeguard serve every period (a point-of-sale transaction, a
// telemetry reading) and logs each acknowledgement with its sequence
// number, the evidence validators compare with what the sink received. A
// refused or failed append is logged and retried with the next record.
type Produce struct {
	// URL is edgeguard serve: http://127.0.0.1:8474, or its records
	// socket as unix:///run/edgeguard/edgeguard.sock (from another pod).
	URL    string
	Stream string
	Period time.Duration
	Size   int // payload bytes (default 256)
	Count  int // stop after this many acknowledged records (0: never)
	Events *events.Log
	Logger *slog.Logger
	Client *http.Client
}

// Run produces until ctx ends or Count records are acknowledged.
func (p Produce) Run(ctx context.Context) error {
	if p.URL == "" || p.Stream == "" {
		return fmt.Errorf("workload produce needs --to and --stream")
	}
	if p.Period <= 0 {
		p.Period = 100 * time.Millisecond
	}
	if p.Size <= 0 {
		p.Size = 256
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	target := p.URL // as given, for messages
	if p.Client == nil {
		p.Client = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
		if sock, ok := strings.CutPrefix(p.URL, "unix://"); ok {
			p.Client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}
			p.URL = "http://edgeguard"
		}
	}
	t := time.NewTicker(p.Period)
	defer t.Stop()
	acked, n := 0, 0
	for {
		n++
		payload := bytes.Repeat([]byte{'.'}, p.Size)
		copy(payload, fmt.Sprintf("%s #%d at %s ", p.Stream, n, time.Now().UTC().Format(time.RFC3339Nano)))
		rc, err := p.append(ctx, payload)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.Events.Emit("append-failed", "n", n, "err", err.Error())
			if n == 1 || acked > 0 && n-acked == 1 {
				// Said once when it starts failing, not per record.
				p.Logger.Warn("cannot append to edgeguard serve: is it running with --buffer (and --socket, for unix://)? retrying every period", "to", target, "err", err)
			}
		default:
			acked++
			p.Events.Emit("acked", "stream", p.Stream, "seq", rc.Seq, "key", rc.Key, "hash", rc.Hash, "n", n)
			if p.Count > 0 && acked >= p.Count {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p Produce) append(ctx context.Context, payload []byte) (buffer.Receipt, error) {
	body, _ := json.Marshal(buffer.Input{Stream: p.Stream, Payload: payload})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/v1/records", bytes.NewReader(body))
	if err != nil {
		return buffer.Receipt{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.Client.Do(req)
	if err != nil {
		return buffer.Receipt{}, err
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return buffer.Receipt{}, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(ans))
	}
	var out struct {
		Receipts []buffer.Receipt `json:"receipts"`
	}
	if err := json.Unmarshal(ans, &out); err != nil || len(out.Receipts) != 1 {
		return buffer.Receipt{}, fmt.Errorf("not a receipt: %q", ans)
	}
	if out.Receipts[0].Dropped {
		return buffer.Receipt{}, fmt.Errorf("dropped by the buffer's overflow policy (seq %d)", out.Receipts[0].Seq)
	}
	return out.Receipts[0], nil
}
