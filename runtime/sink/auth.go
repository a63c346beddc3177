package sink

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/edgefault/edgefault/runtime/record"
)

// Credentials say who may deliver records: one bearer token per site (a
// DaemonSet mounts one Secret on every node of a site), each allowed the
// records of that site's members only. One sink serves many sites.
type Credentials struct {
	Sites []Site `json:"sites"`
	// Readers are tokens that may read every stream's summary (an
	// operator, a test harness); a site's token reads its own members'.
	Readers []string `json:"readers,omitempty"`
}

// Site is one credential.
type Site struct {
	Name string `json:"name"`
	// Token is the bearer token its forwarders send (at least 16
	// characters; `openssl rand -hex 32` makes one).
	Token string `json:"token"`
	// Members are the nodes whose records it may deliver.
	Members []string `json:"members"`
}

// ParseCredentials reads credentials (JSON) and checks them.
func ParseCredentials(b []byte) (Credentials, error) {
	var c Credentials
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf(`sink credentials: want {"sites":[{"name":"store","token":"...","members":["store-pos"]}]}: %w`, err)
	}
	return c, c.check()
}

func (c Credentials) check() error {
	if len(c.Sites) == 0 {
		return fmt.Errorf("sink credentials: no sites: nobody could deliver")
	}
	seen := map[[32]byte]string{}
	for i, s := range c.Sites {
		switch {
		case s.Name == "":
			return fmt.Errorf("sink credentials: site %d has no name", i)
		case len(s.Token) < 16:
			return fmt.Errorf("sink credentials: site %s: a token of at least 16 characters (openssl rand -hex 32)", s.Name)
		case len(s.Members) == 0:
			return fmt.Errorf("sink credentials: site %s has no members", s.Name)
		}
		h := sha256.Sum256([]byte(s.Token))
		if other, ok := seen[h]; ok {
			return fmt.Errorf("sink credentials: sites %s and %s share a token", other, s.Name)
		}
		seen[h] = s.Name
		for _, m := range s.Members {
			if err := record.ValidNode(m); err != nil {
				return fmt.Errorf("sink credentials: site %s: %w", s.Name, err)
			}
		}
	}
	for i, r := range c.Readers {
		if len(r) < 16 {
			return fmt.Errorf("sink credentials: reader %d: a token of at least 16 characters", i)
		}
		h := sha256.Sum256([]byte(r))
		if other, ok := seen[h]; ok {
			return fmt.Errorf("sink credentials: reader %d shares a token with %s", i, other)
		}
		seen[h] = fmt.Sprintf("reader %d", i)
	}
	return nil
}

// Option configures Open.
type Option func(*Sink)

// WithCredentials makes the sink accept batches only from the sites
// credited, each only for its own members.
func WithCredentials(c Credentials) Option {
	return func(s *Sink) {
		s.sites = map[[32]byte]*Site{}
		for i := range c.Sites {
			s.sites[sha256.Sum256([]byte(c.Sites[i].Token))] = &c.Sites[i]
		}
		s.readers = map[[32]byte]bool{}
		for _, r := range c.Readers {
			s.readers[sha256.Sum256([]byte(r))] = true
		}
	}
}

// WithoutAuth accepts batches from anyone: for tests and a sink on a
// private network only. Anyone who reaches it can then store records under
// any key, and so make real ones conflict.
func WithoutAuth() Option { return func(s *Sink) { s.open = true } }

// site authenticates a request: the site its token belongs to (nil with
// WithoutAuth), or the status to answer.
func (s *Sink) site(r *http.Request) (*Site, int, string) {
	if s.open {
		return nil, 0, ""
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return nil, http.StatusUnauthorized, "no bearer token: the sink takes batches only from credited sites (edgeguard serve --sink-token-file, or $EDGEGUARD_SINK_TOKEN)"
	}
	// Looked up by hash: the comparison's time says nothing of the
	// tokens.
	site, ok := s.sites[sha256.Sum256([]byte(tok))]
	if !ok {
		return nil, http.StatusUnauthorized, "unknown token"
	}
	return site, 0, ""
}

// reader authenticates a read of the summary: all streams (a reader's
// token, or no authentication), or a site's members' only.
func (s *Sink) reader(r *http.Request) (all bool, site *Site, code int, why string) {
	if s.open {
		return true, nil, 0, ""
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false, nil, http.StatusUnauthorized, "no bearer token: the summary is for credited sites and readers"
	}
	h := sha256.Sum256([]byte(tok))
	if s.readers[h] {
		return true, nil, 0, ""
	}
	if site, ok := s.sites[h]; ok {
		return false, site, 0, ""
	}
	return false, nil, http.StatusUnauthorized, "unknown token"
}

// allowed says whether site may deliver a record of node.
func allowed(site *Site, node string) bool {
	return site == nil || slices.Contains(site.Members, node)
}
