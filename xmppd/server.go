// Package xmppd is the XMPP server: its listeners (c2s, direct TLS, s2s,
// WebSocket), the client streams, and the router (package router) that its
// modules (packages xmppd/mod/...) are loaded on.
package xmppd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/xmppd/c2s"
	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/websocket"
	"dialtone/xmppd/wire"
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
	ParkAfter       time.Duration // silence before a client session waits with no goroutine (its stack was most of an idle session), default 2s
	WriteTimeout    time.Duration // one flush to a client, default 30s
	MaxStanzaSize   int           // default DefaultMaxStanzaSize
	MaxPending      int           // unauthenticated connections at once, default 1000 (see stream.PendingTable)
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

// Metrics are the server's Prometheus metrics.
type Metrics = stream.Metrics

// NewMetrics makes the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics { return stream.NewMetrics(reg) }

// DefaultMaxStanzaSize is the largest stanza accepted by default.
const DefaultMaxStanzaSize = wire.DefaultMaxStanzaSize

// NSClient and NSServer are the content namespaces of c2s and s2s streams.
const (
	NSClient = router.NSClient
	NSServer = router.NSServer
)

// Server is an XMPP server for one domain: its router, its client
// streams, and its listeners.
type Server struct {
	cfg     Config
	domain  jid.JID
	log     *slog.Logger
	m       *Metrics
	router  *router.Router
	c2s     *c2s.Service
	streams *stream.Config // of client streams
	pending *stream.PendingTable

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closing   bool
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
	def(&cfg.ParkAfter, 2*time.Second)
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
	}
	s.pending = stream.NewPendingTable(cfg.MaxPending, cfg.MaxPendingPerIP, s.m.Pending)
	s.router, err = router.New(router.Config{
		Domain:             cfg.Domain,
		Parser:             cfg.Parser,
		Accounts:           cfg.Accounts,
		SessionsPerAccount: cfg.SessionsPerAccount,
		StoreTimeout:       cfg.StoreTimeout,
		Log:                cfg.Log,
		Routed:             s.routed,
	})
	if err != nil {
		return nil, fmt.Errorf("xmppd: %w", err)
	}
	s.streams = &stream.Config{WriteTimeout: cfg.WriteTimeout, QueueSize: cfg.QueueSize, QueueBytes: cfg.QueueBytes, Metrics: s.m}
	s.c2s = c2s.New(c2s.Config{
		Domain:          d,
		TLS:             cfg.TLS,
		SASL:            cfg.SASL,
		Accounts:        cfg.Accounts,
		IPLockout:       cfg.IPLockout,
		RegistrationURL: cfg.RegistrationURL,
		AuthTimeout:     cfg.AuthTimeout,
		IdleTimeout:     cfg.IdleTimeout,
		PingTimeout:     cfg.PingTimeout,
		ParkAfter:       cfg.ParkAfter,
		SASLAttempts:    cfg.SASLAttempts,
		MaxStanzaSize:   cfg.MaxStanzaSize,
		Rate:            cfg.C2SRate,
		Stream:          s.streams,
		Router:          s.router,
		Pending:         s.pending,
		Log:             cfg.Log,
	})
	return s, nil
}

func (s *Server) routed(k router.Kind) {
	switch k {
	case router.KindMessage:
		s.m.Messages.Inc()
	case router.KindPresence:
		s.m.Presences.Inc()
	case router.KindIQ:
		s.m.IQs.Inc()
	}
}

// Load registers the modules on the server's router, in order; call it
// before serving. An error (two modules handling one namespace, say) must
// stop the start.
func (s *Server) Load(mods ...router.Module) error { return s.router.Load(mods...) }

// Router is the server's router: what modules route with.
func (s *Server) Router() *router.Router { return s.router }

// Domain is the served domain.
func (s *Server) Domain() string { return s.domain.String() }

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

// ServeC2S accepts client connections on l that must use STARTTLS.
func (s *Server) ServeC2S(l net.Listener) error { return s.serve(l, false) }

// ServeDirectTLS accepts client connections on l that start with TLS (XEP-0368).
func (s *Server) ServeDirectTLS(l net.Listener) error { return s.serve(l, true) }

// isClosing reports whether Shutdown has begun.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

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
	return stream.Accept(l, s.log, name, s.isClosing, func(nc net.Conn) {
		counter.Inc()
		ip := stream.RemoteIP(nc)
		slot := s.pending.Admit(ip, func() {
			s.log.Debug("unauthenticated connection evicted for a newcomer", "ip", ip)
			nc.Close()
		})
		if slot == nil {
			s.log.Warn("too many unauthenticated connections", "ip", ip)
			nc.Close()
			return
		}
		go s.c2s.Serve(nc, direct, slot)
	})
}

// Shutdown stops the listeners, closes every stream with system-shutdown
// after flushing what was queued for it, waits for the connections to end
// or ctx to expire, and then stops the modules' goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	// The sessions are told first, through their Sinks (a module that
	// keeps a session across streams learns why its stream ends before
	// the stream does), then every connection's reading stops.
	for _, sess := range s.router.All() {
		sess.Close("system-shutdown", "")
	}
	s.c2s.Shutdown()
	if err := s.c2s.Wait(ctx); err != nil {
		return err
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

// ServeWebSocket serves GET /xmpp-websocket (RFC 7395): it upgrades the
// request (subprotocol "xmpp" required: 426 without an upgrade, 400
// without the subprotocol) and runs the client's stream until it ends.
// There is no STARTTLS: the stream is as secure as the HTTP connection, so
// PLAIN is offered only when the request came over TLS (here or at a
// trusted proxy, see package forwarded). The limits are those of c2s
// connections.
func (s *Server) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	if !websocket.CheckUpgrade(w, r) {
		return
	}
	client := forwarded.ClientOf(r)
	if s.isClosing() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	// Evicted during the upgrade, the connection is closed as soon as it
	// exists (the HTTP server's timeouts bound the upgrade itself).
	var (
		evicted  atomic.Bool
		upgraded atomic.Pointer[websocket.Transport]
	)
	slot := s.pending.Admit(client.IP, func() {
		evicted.Store(true)
		if t := upgraded.Load(); t != nil {
			t.CloseNow()
		}
	})
	if slot == nil {
		s.log.Warn("too many unauthenticated connections", "ip", client.IP)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	t, err := websocket.Accept(w, r, s.cfg.MaxStanzaSize)
	if err != nil {
		slot.Release()
		s.log.Debug("WebSocket upgrade failed", "ip", client.IP, "err", err)
		return
	}
	s.m.Connections.WithLabelValues("websocket").Inc()
	if upgraded.Store(t); evicted.Load() {
		t.CloseNow()
	}
	// On the handler's goroutine: the connection is hijacked.
	// Channel binding only to a TLS connection this server terminated:
	// behind a proxy the client's TLS ends there and -PLUS must not be
	// offered. The exporter alone, since the HTTP server's certificate is
	// not known here (a TLS 1.2 request gets no -PLUS).
	var binding auth.ChannelBinding
	if r.TLS != nil {
		binding = auth.BindingOf(*r.TLS, nil)
	}
	s.c2s.ServeTransport(t, client.IP, client.HTTPS, binding, slot)
}
