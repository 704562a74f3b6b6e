// Package xmppd is the XMPP server: its listeners (c2s, direct TLS, s2s,
// WebSocket), the client streams, and the router (package router) that its
// modules (packages xmppd/mod/...) are loaded on.
package xmppd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
)

// Config configures a Server. Zero durations and sizes take the defaults.
type Config struct {
	Domain   string
	TLS      *tls.Config // server certificate; required
	SASL     *auth.SASL
	Parser   *auth.NumberParser
	Accounts auth.Accounts
	Log      *slog.Logger
	Metrics  *Metrics

	AuthTimeout     time.Duration // whole negotiation, default 30s
	IdleTimeout     time.Duration // silence before the server pings, default 5m
	PingTimeout     time.Duration // silence after the ping before closing, default 30s
	WriteTimeout    time.Duration // one flush to a client, default 30s
	MaxStanzaSize   int           // default DefaultMaxStanzaSize
	MaxPending      int           // unauthenticated connections at once, default 1000 (see pendingTable)
	MaxPendingPerIP int           // per IPv4 address or IPv6 /64, default 50
	QueueSize       int           // per-session write queue in stanzas, default 2048
	QueueBytes      int           // per-session write queue in bytes, default 1 MiB
	SASLAttempts    int           // failed SASL attempts per connection, default 3

	// SessionsPerAccount bounds the bound resources of one account (one
	// more gets resource-constraint at bind); 0: no limit.
	SessionsPerAccount int
	// C2SRate is the bytes per second one client connection may send, with
	// a burst of ten seconds' worth; beyond it its reads wait. 0: no limit.
	C2SRate int

	// IPLockout counts failed logins per client IP (keyed "ip:ADDR"), so
	// that one client cannot try password after password across many
	// numbers; nil: no per-IP limit.
	IPLockout *auth.Lockout

	// RegistrationURL is where in-band registration attempts are sent
	// (the web page that texts a password).
	RegistrationURL string

	// StoreTimeout bounds every store call made for a stanza
	// (XMPPD_STORE_TIMEOUT); default 5s. Modules get it through
	// router.Router.StoreContext.
	StoreTimeout time.Duration
}

// Server is an XMPP server for one domain.
type Server struct {
	cfg    Config
	domain jid.JID
	log    *slog.Logger
	m      *Metrics
	router *router.Router

	pending *pendingTable // unauthenticated connections (pending.go)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{} // connections not yet bound
	closing   bool
	wg        sync.WaitGroup
}

// NewServer checks cfg and makes a Server.
func NewServer(cfg Config) (*Server, error) {
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("xmppd: invalid domain %q", cfg.Domain)
	}
	if cfg.TLS == nil || cfg.SASL == nil || cfg.Parser == nil || cfg.Accounts == nil {
		return nil, errors.New("xmppd: TLS, SASL, Parser and Accounts are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AuthTimeout, 30*time.Second)
	def(&cfg.IdleTimeout, 5*time.Minute)
	def(&cfg.PingTimeout, 30*time.Second)
	def(&cfg.WriteTimeout, 30*time.Second)
	defi := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defi(&cfg.MaxStanzaSize, DefaultMaxStanzaSize)
	defi(&cfg.MaxPending, 1000)
	defi(&cfg.MaxPendingPerIP, 50)
	defi(&cfg.QueueSize, 2048)
	defi(&cfg.QueueBytes, 1<<20)
	defi(&cfg.SASLAttempts, 3)
	if cfg.RegistrationURL == "" {
		cfg.RegistrationURL = "the web page of " + cfg.Domain
	}
	s := &Server{
		cfg:       cfg,
		domain:    d,
		log:       cfg.Log,
		m:         cfg.Metrics,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.pending = newPendingTable(cfg.MaxPending, cfg.MaxPendingPerIP, s.m.Pending)
	s.router, err = router.New(router.Config{
		Domain:             cfg.Domain,
		Parser:             cfg.Parser,
		Accounts:           cfg.Accounts,
		SessionsPerAccount: cfg.SessionsPerAccount,
		StoreTimeout:       cfg.StoreTimeout,
		Log:                cfg.Log,
		Routed:             s.m.routed,
	})
	if err != nil {
		return nil, fmt.Errorf("xmppd: %w", err)
	}
	return s, nil
}

// Load registers the modules on the server's router, in order; call it
// before serving. An error (two modules handling one namespace, say) must
// stop the start.
func (s *Server) Load(mods ...router.Module) error { return s.router.Load(mods...) }

// Router is the server's router: what modules route with.
func (s *Server) Router() *router.Router { return s.router }

// Sessions returns the bound sessions of the account bare (do not modify
// the slice).
func (s *Server) Sessions(bare jid.JID) []*router.Session { return s.router.Sessions(bare) }

// QuerySession sends the session full an iq from the server and waits for
// its answer (see router.Router.QuerySession).
func (s *Server) QuerySession(ctx context.Context, full jid.JID, typ string, payload []byte) (*router.Stanza, error) {
	return s.router.QuerySession(ctx, full, typ, payload)
}

// ErrSessionClosed is QuerySession's error for a session that is not
// bound or ends first.
var ErrSessionClosed = router.ErrSessionClosed

// Domain is the served domain.
func (s *Server) Domain() string { return s.domain.String() }

// ServeC2S accepts client connections on l that must use STARTTLS.
func (s *Server) ServeC2S(l net.Listener) error { return s.serve(l, false) }

// ServeDirectTLS accepts client connections on l that start with TLS (XEP-0368).
func (s *Server) ServeDirectTLS(l net.Listener) error { return s.serve(l, true) }

func (s *Server) serve(l net.Listener, direct bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.router.Serving()
	name := "c2s"
	if direct {
		name = "c2s_direct_tls"
	}
	counter := s.m.Connections.WithLabelValues(name)
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			// Temporary trouble (out of file descriptors): back off, never spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "listener", name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		counter.Inc()
		ip := remoteIP(nc)
		c := &conn{srv: s, raw: nc, nc: nc, ip: ip, direct: direct}
		if c.slot = s.pending.admit(ip, c.evict); c.slot == nil {
			s.log.Warn("too many unauthenticated connections", "ip", ip)
			nc.Close()
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.slot.release()
			nc.Close()
			return net.ErrClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.run()
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// Shutdown stops the listeners, closes every stream with system-shutdown
// after flushing what was queued for it, and waits for the connections to
// end or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	pending := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		pending = append(pending, c)
	}
	s.mu.Unlock()
	for _, c := range pending {
		c.abort()
	}
	for _, sess := range s.router.All() {
		sess.Close("system-shutdown", "")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The modules' own goroutines (deliveries, sweeps) end after the
	// sessions whose work they did.
	return s.router.Close(ctx)
}

// Kick closes every session of the account with the stream error condition
// and reports how many there were.
func (s *Server) Kick(ctx context.Context, number string, condition string) (int, error) {
	n, err := s.cfg.Parser.Parse(number)
	if err != nil {
		return 0, err
	}
	j, err := auth.CanonicalJID(n, s.domain.String())
	if err != nil {
		return 0, err
	}
	list := s.router.Sessions(j)
	for _, sess := range list {
		sess.Close(condition, "")
	}
	return len(list), nil
}

// KickExcept closes the account's sessions other than keep (a full JID),
// e.g. after a password change made from the keep session.
func (s *Server) KickExcept(ctx context.Context, number string, keep jid.JID, condition string) (int, error) {
	n, err := s.cfg.Parser.Parse(number)
	if err != nil {
		return 0, err
	}
	j, err := auth.CanonicalJID(n, s.domain.String())
	if err != nil {
		return 0, err
	}
	closed := 0
	for _, sess := range s.router.Sessions(j) {
		if !sess.JID().Equal(keep) {
			sess.Close(condition, "")
			closed++
		}
	}
	return closed, nil
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
