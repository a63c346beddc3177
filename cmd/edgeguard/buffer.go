package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgefault/edgefault/runtime/buffer"
	"github.com/edgefault/edgefault/runtime/gate"
	"github.com/edgefault/edgefault/runtime/sink"
	"github.com/edgefault/edgefault/units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// bufferFlags configure serve's store-and-forward buffer.
type bufferFlags struct {
	path, sink, maxBytes, overflow, durability, share string
	tokenFile, sinkCA                                 string
	maxRecords                                        int64
	salvage, noJitter                                 bool
}

func (f *bufferFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "buffer", "", "keep records in a durable buffer at this file (enables POST /v1/records) and forward them to --sink while the gate is open")
	fs.StringVar(&f.sink, "sink", "", "the sink's URL (edgeguard sink), e.g. http://100.64.0.1:8082")
	fs.StringVar(&f.tokenFile, "sink-token-file", "", "file holding the site's bearer token for the sink (default: $EDGEGUARD_SINK_TOKEN)")
	fs.StringVar(&f.sinkCA, "sink-ca", "", "PEM file of the CA that signed an https:// sink's certificate (default: the system's roots)")
	fs.Int64Var(&f.maxRecords, "buffer-max-records", 1_000_000, "bound on waiting records")
	fs.StringVar(&f.maxBytes, "buffer-max-bytes", "256MB", "bound on waiting bytes")
	fs.StringVar(&f.overflow, "overflow", "block", "when full: block (refuse with 507, never drop), drop-oldest, drop-newest")
	fs.StringVar(&f.durability, "durability", "disk", "disk (acknowledge after fsync), memory (acknowledge at once; LOSES DATA on a crash) or unsynced (acknowledge before fsync; LOSES DATA on a power loss); the last two for comparison only")
	fs.BoolVar(&f.salvage, "buffer-salvage", true, "when the buffer's file is damaged: move it aside and queue every record still readable in it into a new one (false: refuse to start)")
	fs.StringVar(&f.share, "flush-share", "80%", "share of the measured link the flush may use; the rest is left to other traffic")
	fs.BoolVar(&f.noJitter, "forward-no-jitter", false, "wait back-offs and a busy sink's Retry-After exactly, as naive forwarders do (a region then retries in step): for comparison only")
}

func (f *bufferFlags) open(g *globals) (*buffer.Buffer, buffer.ForwardOptions, error) {
	var fo buffer.ForwardOptions
	if f.sink == "" {
		return nil, fo, fmt.Errorf("--buffer needs --sink: where to forward records (edgeguard sink)")
	}
	s, err := gate.ParseServer(f.sink)
	if err != nil {
		return nil, fo, fmt.Errorf("--sink: %w", err)
	}
	fo.Sink = s
	dl, err := g.dial()
	if err != nil {
		return nil, fo, err
	}
	tr := &http.Transport{DisableCompression: true, DialContext: dl.DialContext}
	if f.sinkCA != "" {
		pem, err := os.ReadFile(f.sinkCA)
		if err != nil {
			return nil, fo, fmt.Errorf("--sink-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fo, fmt.Errorf("--sink-ca %s: no PEM certificate in it", f.sinkCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	fo.Client = &http.Client{Transport: tr}
	if strings.HasPrefix(fo.Sink, "http://") {
		g.log.Warn("the sink is plain http: its token and the records cross the uplink in the clear; give an https:// --sink (and --sink-ca) where the uplink is not private")
	}
	fo.Token = strings.TrimSpace(os.Getenv("EDGEGUARD_SINK_TOKEN")) // a Secret made --from-file ends in a newline
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fo, fmt.Errorf("--sink-token-file: %w", err)
		}
		fo.Token = strings.TrimSpace(string(b))
	}
	if fo.Token == "" {
		g.log.Warn("no sink token (--sink-token-file or $EDGEGUARD_SINK_TOKEN): a sink that authenticates forwarders will refuse every batch, and the records wait here")
	}
	mb, err := units.ParseSize("--buffer-max-bytes", f.maxBytes)
	if err != nil {
		return nil, fo, err
	}
	if f.maxRecords <= 0 || mb <= 0 {
		return nil, fo, fmt.Errorf("--buffer-max-records and --buffer-max-bytes must be more than 0")
	}
	ov, err := buffer.ParseOverflow(f.overflow)
	if err != nil {
		return nil, fo, fmt.Errorf("--overflow: %w", err)
	}
	d := buffer.Durability(f.durability)
	if d != buffer.Disk && d != buffer.Memory && d != buffer.Unsynced {
		return nil, fo, fmt.Errorf("--durability %q: use disk, memory or unsynced", f.durability)
	}
	sh, err := units.Percent("--flush-share", f.share)
	if err != nil {
		return nil, fo, err
	}
	if sh == 0 {
		return nil, fo, fmt.Errorf("--flush-share 0%%: the buffer could never flush")
	}
	fo.Share = sh / 100
	fo.NoJitter = f.noJitter
	b, err := buffer.Open(f.path, buffer.Options{Node: g.node, MaxRecords: f.maxRecords, MaxBytes: mb, Overflow: ov, Durability: d,
		Salvage: f.salvage, Events: g.openEvents("buffer"), Logger: g.log})
	return b, fo, err
}

func newSinkCmd(g *globals) *cobra.Command {
	var listen, db, credFile, tlsCert, tlsKey, admitRate string
	var insecure bool
	var adm sink.Admission
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Receive forwarded records: durable, deduplicated, with per-stream summaries",
		Long: `sink is the cloud end of the store-and-forward buffer:

  POST /v1/batches   a batch of records (Authorization: Bearer <site token>); answered once
                     durable; a key stored before with the same content is a duplicate
                     (refused), with other content a conflict (kept aside, 409); a record it
                     can never store is named (422); another site's node: 403
  GET  /healthz      200 while it serves
  GET  /metrics      Prometheus: batches admitted, queued, in flight, refused (by bound),
                     records stored, duplicates, conflicts
  GET  /v1/streams   per stream: records, first/last seq, gaps, duplicates refused, conflicts,
                     out-of-order, arrival times (a reader's token: every stream; a site's:
                     its members')
  GET  /v1/hashes    ?node=&epoch=&stream=&after=SEQ: the content hash held under each key,
                     10 000 a page (the same tokens as /v1/streams)

Credentials (--credentials FILE, or $EDGEGUARD_SINK_CREDENTIALS) are JSON:
  {"sites":[{"name":"store","token":"<openssl rand -hex 32>","members":["store-pos","store-cam"]}],
   "readers":["<a token that may read every stream's summary>"]}
one token per site, each allowed the records of its members only.

Admission (--ingest-rate, --ingest-concurrency) keeps a region coming back at
once from overwhelming the sink: a batch that would wait longer than
--ingest-max-wait for its turn at the rate is answered 429 with a Retry-After,
before its body is read (or, once read, for a store slot); forwarders keep it
and come back then, with jitter.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if db == "" {
				return fmt.Errorf("--db is required: the file the sink stores records in")
			}
			var opt sink.Option
			raw := []byte(os.Getenv("EDGEGUARD_SINK_CREDENTIALS"))
			if credFile != "" {
				var err error
				if raw, err = os.ReadFile(credFile); err != nil {
					return fmt.Errorf("--credentials: %w", err)
				}
			}
			switch {
			case len(raw) > 0:
				c, err := sink.ParseCredentials(raw)
				if err != nil {
					return err
				}
				opt = sink.WithCredentials(c)
			case insecure:
				g.log.Warn("the sink takes batches from anyone (--insecure-no-auth): anyone who reaches it can store records under any key")
				opt = sink.WithoutAuth()
			default:
				return fmt.Errorf("the sink needs credentials: --credentials FILE or $EDGEGUARD_SINK_CREDENTIALS (see --help), or --insecure-no-auth on a private network")
			}
			if admitRate != "" {
				r, err := units.ParseRate(admitRate)
				if err != nil {
					return fmt.Errorf("--ingest-rate: %w", err)
				}
				adm.Rate = r
			}
			if adm.Concurrency < 0 || adm.MaxWait < 0 {
				return fmt.Errorf("--ingest-concurrency and --ingest-max-wait must not be negative")
			}
			s, err := sink.Open(filepath.Clean(db), g.openEvents("sink"), opt, sink.WithAdmission(adm))
			if err != nil {
				return err
			}
			defer s.Close()
			var tlsCfg *tls.Config
			if tlsCert != "" || tlsKey != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return fmt.Errorf("--tls-cert/--tls-key: %w", err)
				}
				tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			return runHTTPTLS(cmd.Context(), g, listen, unixSocket{}, tlsCfg, sinkReadTimeout, s, nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8082", "address to serve on")
	cmd.Flags().StringVar(&db, "db", "", "database file (required)")
	cmd.Flags().StringVar(&credFile, "credentials", "", "JSON file of the sites that may deliver, their tokens and members (default: $EDGEGUARD_SINK_CREDENTIALS)")
	cmd.Flags().BoolVar(&insecure, "insecure-no-auth", false, "take batches from anyone (tests, a private network)")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "serve https with this PEM certificate (with --tls-key); forwarders name the CA with --sink-ca")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "the certificate's PEM private key")
	cmd.Flags().StringVar(&admitRate, "ingest-rate", "", "admit batch bodies at most at this rate, e.g. 4MB/s or 40mbit (default: unbounded)")
	cmd.Flags().IntVar(&adm.Concurrency, "ingest-concurrency", 0, "decode and store at most this many batches at once, once their bodies have arrived (default: unbounded)")
	cmd.Flags().DurationVar(&adm.MaxWait, "ingest-max-wait", 2*time.Second, "the longest a batch queues for admission before it is answered 429 with a Retry-After")
	return cmd
}

func newBufferCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "buffer", Short: "Work on a buffer database offline"}
	var into string
	var asJSON bool
	salvage := &cobra.Command{
		Use:   "salvage FILE --into BUFFER",
		Short: "Queue every record still readable in a damaged buffer file into a buffer, under its original key",
		Long: `salvage reads a damaged buffer database (one edgeguard serve moved aside as
<buffer>.corrupt-<time>) page by page, trusting none of its meta pages, and
queues every record it can read into the buffer at --into (created if need be;
not while a serve has it open), under its original key, for the next serve to
deliver. It prints what it found per stream and the sequence ranges it could
not find: delivered before the damage, or lost with it (the sink's summary
tells which). A record delivered before the damage is refused by the sink as a
duplicate, never stored twice; running salvage twice queues nothing twice.

serve does this by itself at start (--buffer-salvage, on by default).`,
		Example: `  edgeguard buffer salvage /var/lib/edgeguard/buffer.db.corrupt-20261202T101500Z --into /var/lib/edgeguard/buffer.db`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("give one file: the damaged buffer serve moved aside, <buffer>.corrupt-<time>")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if into == "" {
				return fmt.Errorf("--into is required: the buffer file to queue the records into (serve's --buffer)")
			}
			rep, err := buffer.Salvage(args[0], into)
			if err != nil {
				return fmt.Errorf("%w (give the file serve moved aside, <buffer>.corrupt-<time>, and stop the serve using --into first)", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	salvage.Flags().StringVar(&into, "into", "", "the buffer file to queue salvaged records into")
	salvage.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(salvage)
	return cmd
}
