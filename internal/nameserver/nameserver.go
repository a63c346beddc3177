// Package nameserver is the embedded fleet's DNS server: it answers A
// queries for the names it is given (the cloud's) over UDP, and, per
// client address, fails them (SERVFAIL) or answers late, as a timeline's
// dns steps ask. It answers nothing else (REFUSED), bounds what it holds
// (one packet buffer; at most 256 delayed answers at once) and never
// forwards a query anywhere.
package nameserver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Rule is what a client's queries get: Fail answers SERVFAIL at once;
// otherwise the answer comes after Delay.
type Rule struct {
	Fail  bool
	Delay time.Duration
}

// maxDelayed bounds the answers waiting out a delay.
const maxDelayed = 256

// Server answers on one PacketConn until Close.
type Server struct {
	pc    net.PacketConn
	names map[string]netip.Addr // lower-case, fully qualified

	mu      sync.Mutex
	rules   map[netip.Addr]Rule
	delayed int
	counts  Counts
	done    chan struct{}
}

// Counts says what the server did.
type Counts struct {
	Answered, Failed, Delayed, Refused, Dropped int
}

// Serve answers queries on pc for names (each a host name, with or
// without the final dot) until Close.
func Serve(pc net.PacketConn, names map[string]netip.Addr) (*Server, error) {
	s := &Server{pc: pc, names: map[string]netip.Addr{}, rules: map[netip.Addr]Rule{}, done: make(chan struct{})}
	for n, a := range names {
		fq, err := dnsmessage.NewName(strings.ToLower(strings.TrimSuffix(n, ".")) + ".")
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("name %q for %v: a host name and an IPv4 address, please", n, a)
		}
		s.names[fq.String()] = a
	}
	go s.loop()
	return s, nil
}

// Addr is where the server answers.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Set gives client's queries rule; the zero Rule answers at once.
func (s *Server) Set(client netip.Addr, r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r == (Rule{}) {
		delete(s.rules, client.Unmap())
		return
	}
	s.rules[client.Unmap()] = r
}

// Counts says what the server did so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close stops answering (delayed answers are dropped).
func (s *Server) Close() error {
	err := s.pc.Close()
	<-s.done
	return err
}

func (s *Server) loop() {
	defer close(s.done)
	buf := make([]byte, 1232)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed
		}
		resp, rule, ok := s.answer(buf[:n], from)
		if !ok {
			continue
		}
		if rule.Delay <= 0 || rule.Fail {
			_, _ = s.pc.WriteTo(resp, from)
			continue
		}
		s.mu.Lock()
		if s.delayed >= maxDelayed {
			s.counts.Dropped++
			s.mu.Unlock()
			continue
		}
		s.delayed++
		s.counts.Delayed++
		s.mu.Unlock()
		time.AfterFunc(rule.Delay, func() {
			_, _ = s.pc.WriteTo(resp, from)
			s.mu.Lock()
			s.delayed--
			s.mu.Unlock()
		})
	}
}

// answer builds the response to one query from client from, and the rule
// it is sent under; ok is false for what gets no answer at all.
func (s *Server) answer(q []byte, from net.Addr) (resp []byte, r Rule, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, r, false
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, r, false
	}
	if ua, isUDP := from.(*net.UDPAddr); isUDP {
		if a, okA := netip.AddrFromSlice(ua.IP); okA {
			s.mu.Lock()
			r = s.rules[a.Unmap()]
			s.mu.Unlock()
		}
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	var answers []dnsmessage.Resource
	switch {
	case h.OpCode != 0 || len(qs) != 1:
		rh.RCode = dnsmessage.RCodeNotImplemented
	case r.Fail:
		rh.RCode = dnsmessage.RCodeServerFailure
	default:
		a, known := s.names[strings.ToLower(qs[0].Name.String())]
		switch {
		case !known:
			rh.RCode = dnsmessage.RCodeRefused
		case qs[0].Type == dnsmessage.TypeA && qs[0].Class == dnsmessage.ClassINET:
			answers = append(answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: qs[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
				Body:   &dnsmessage.AResource{A: a.As4()},
			})
		default:
			// The name exists, with no record of this type (AAAA): an
			// empty answer, so the client does not wait for one.
		}
	}
	m := dnsmessage.Message{Header: rh, Questions: qs, Answers: answers}
	resp, err = m.Pack()
	if err != nil {
		return nil, r, false
	}
	s.mu.Lock()
	switch {
	case r.Fail:
		s.counts.Failed++
	case rh.RCode == dnsmessage.RCodeRefused || rh.RCode == dnsmessage.RCodeNotImplemented:
		s.counts.Refused++
	default:
		s.counts.Answered++
	}
	s.mu.Unlock()
	return resp, r, true
}
