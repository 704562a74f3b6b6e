// Package s2s is federation (RFC 6120 server-to-server): links to other
// domains dialled on demand and accepted on the s2s listener, secured with
// TLS and authenticated with SASL EXTERNAL or dialback (XEP-0220, XEP-0185,
// XEP-0344), bidirectional (XEP-0288), closed when idle, and the check that
// every stanza a peer sends comes from a domain it authenticated. The
// router hands it the stanzas for other domains (Federation.Send).
//
// Every domain served here federates: the domain and the component hosts
// modules add (groups.DOMAIN, api.DOMAIN, ...). Authentication is per
// (local, remote) pair of domains (XEP-0220): outgoing, one link per pair,
// as Prosody and ejabberd keep them, so a host's stanzas leave on a link
// authenticated for that host; incoming, a stream may be opened to any
// served domain and carry several pairs (XEP-0220 §2.4), and a stanza is
// taken only for a pair its peer authenticated.
package s2s

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Config configures server-to-server links (RFC 6120 s2s). Zero values
// take the defaults; the zero value requires TLS everywhere.
type Config struct {
	// Routes maps a remote domain to the host:port that serves it,
	// instead of DNS (private federations, tests).
	Routes map[string]string
	// AllowPlaintext lets a link go on without TLS when the peer offers
	// none (XMPPD_S2S_REQUIRE_TLS=false). Never the default.
	AllowPlaintext bool
	// DialbackSecret is the secret of XEP-0185 dialback keys; required.
	DialbackSecret []byte
	// InsecureDomains are peers whose certificates are accepted for TLS
	// without verification (self-signed); they authenticate by dialback.
	InsecureDomains []string
	// RootCAs verifies peer certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// QueueSize is how many stanzas per domain wait while its link comes
	// up; default 1000.
	QueueSize int
	// QueueBytes bounds in bytes both what waits for a domain's link to
	// come up and what waits on a link for the peer to read; default
	// 1 MiB. A link over it is closed with policy-violation.
	QueueBytes int
	// Rate is the bytes per second one link may send us, with a burst of
	// ten seconds' worth; beyond it its reads wait (XMPPD_S2S_RATE).
	// 0: no limit.
	Rate int
	// ConnectTimeout bounds resolving, connecting and negotiating a link;
	// stanzas still waiting then go back to their senders. Default 30s.
	ConnectTimeout time.Duration
	// IdleTimeout closes a link that carried no stanza for this long;
	// default 10m.
	IdleTimeout time.Duration
	// RetryAfter: after a failed attempt, stanzas to the domain are
	// answered with the same error at once for this long; default 5s.
	RetryAfter time.Duration
	// DisableBidi stops offering and requesting XEP-0288 bidirectional
	// links.
	DisableBidi bool
	// Registerer takes the federation's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Resolver is used for SRV lookups; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Server is what federation takes from the server it links: its router,
// its certificate, its table of unauthenticated connections, the limits of
// its streams.
type Server struct {
	Router *router.Router
	// TLS is the server certificate's configuration.
	TLS *tls.Config
	// Pending counts the unauthenticated connections of every listener.
	Pending *stream.PendingTable
	// Stream is the write timeout, queue bounds and metrics of streams.
	Stream        *stream.Config
	MaxStanzaSize int
	// AuthTimeout bounds the negotiation of a link a peer opened.
	AuthTimeout time.Duration
	Log         *slog.Logger
}

// Federation links the server to other XMPP domains: it accepts links on
// the s2s listener, dials out for stanzas to remote domains (its Send is
// the router's remote route) and checks that every stanza a peer sends
// comes from a domain that peer authenticated.
type Federation struct {
	srv        Server
	streams    *stream.Config // of links: the server's, with the federation's byte bound
	cfg        Config
	log        *slog.Logger
	m          *s2sMetrics
	domain     string
	insecure   map[string]bool
	secretHash [32]byte
	ctx        context.Context
	cancel     context.CancelFunc
	lookupSRV  func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)

	mu        sync.Mutex
	remotes   map[pair]*remote
	pruneAt   int       // prune remotes when a new one would make this many
	prunedAt  time.Time // or when the last pruning is older than RetryAfter
	links     map[*link]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup
}

// pair is one XEP-0220 authentication: remote proved to local (or local
// to remote). Links are kept per pair, not per remote domain: a stanza
// from a component host (groups.DOMAIN) must go on a stream authenticated
// for that host, which Prosody and ejabberd also keep one of per pair.
type pair struct{ local, remote string }

// remote is what the federation knows about one remote domain, as seen
// from one of the domains served here.
type remote struct {
	local     string           // the domain served here that the link is from
	domain    string           // the remote domain
	out       *link            // the authenticated stream stanzas to domain go on
	queue     []*router.Stanza // waiting for the link
	queued    int              // bytes in queue
	dialing   bool
	failUntil time.Time
	failCond  string
}

// New makes the federation of srv and makes it the route of the router's
// stanzas to other domains; serve its listener with Serve.
func New(srv Server, cfg Config) (*Federation, error) {
	if len(cfg.DialbackSecret) == 0 {
		return nil, errors.New("s2s: a dialback secret is required")
	}
	routes := make(map[string]string, len(cfg.Routes))
	for d, addr := range cfg.Routes {
		j, err := jid.Parse(d)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			return nil, fmt.Errorf("s2s: route for %q: not a domain", d)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("s2s: route for %q: %w", d, err)
		}
		routes[j.Domainpart()] = addr
	}
	cfg.Routes = routes
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 1 << 20
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	streams := *srv.Stream
	streams.QueueBytes = cfg.QueueBytes
	f := &Federation{
		srv:        srv,
		streams:    &streams,
		cfg:        cfg,
		log:        srv.Log.With("component", "s2s"),
		m:          newS2SMetrics(cfg.Registerer),
		domain:     srv.Router.Domain(),
		insecure:   map[string]bool{},
		secretHash: sha256.Sum256(cfg.DialbackSecret),
		remotes:    map[pair]*remote{},
		pruneAt:    64,
		links:      map[*link]struct{}{},
		listeners:  map[net.Listener]struct{}{},
		lookupSRV:  cfg.Resolver.LookupSRV,
	}
	for _, d := range cfg.InsecureDomains {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			f.insecure[d] = true
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	srv.Router.SetRemote(f.Send)
	return f, nil
}

// Serve accepts links from other servers on l until Shutdown.
func (f *Federation) Serve(l net.Listener) error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return net.ErrClosed
	}
	f.listeners[l] = struct{}{}
	f.mu.Unlock()
	f.srv.Router.Serving()
	counter := f.srv.Stream.Metrics.Connections.WithLabelValues("s2s")
	return stream.Accept(l, f.log, "s2s", f.isClosing, func(nc net.Conn) {
		counter.Inc()
		ip := stream.RemoteIP(nc)
		slot := f.srv.Pending.Admit(ip, func() { nc.Close() })
		if slot == nil {
			f.log.Warn("too many unauthenticated connections", "ip", ip)
			nc.Close()
			return
		}
		s := f.newLink(nc, false)
		s.ip, s.slot = ip, slot
		if !f.track(s) {
			slot.Release()
			nc.Close()
			return
		}
		go s.runIncoming()
	})
}

// hosted reports whether domain is served here: the domain or one of the
// component hosts the modules added (h.AddHost). The hosts are read when
// asked, as the modules are loaded after the federation is made.
func (f *Federation) hosted(domain string) bool {
	if domain == f.domain {
		return true
	}
	_, ok := f.srv.Router.Hooks().Hosts()[domain]
	return ok
}

// localOf is the served domain a stanza from j leaves from: its own when
// it is served here, else the domain (the router sends only from served
// domains; this keeps a stray one on the domain's links).
func (f *Federation) localOf(j jid.JID) string {
	if d := j.Domainpart(); f.hosted(d) {
		return d
	}
	return f.domain
}

func (f *Federation) isClosing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closing
}

// track adds a link to the set that Shutdown closes; false when closing.
func (f *Federation) track(s *link) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.links[s] = struct{}{}
	f.wg.Add(1)
	return true
}

// untrack removes a finished link and every use of it.
func (f *Federation) untrack(s *link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[s]; !ok {
		return
	}
	delete(f.links, s)
	for _, r := range f.remotes {
		if r.out == s {
			r.out = nil
		}
	}
	f.wg.Done()
}

// Shutdown stops the listeners, closes every link with system-shutdown,
// answers stanzas still waiting for a link, and waits for the links to
// end or ctx to expire.
func (f *Federation) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closing = true
	for l := range f.listeners {
		l.Close()
	}
	links := make([]*link, 0, len(f.links))
	for s := range f.links {
		links = append(links, s)
	}
	var waiting []*router.Stanza
	for _, r := range f.remotes {
		waiting = append(waiting, r.queue...)
		r.queue, r.queued = nil, 0
	}
	f.mu.Unlock()
	f.cancel()
	for _, s := range links {
		s.closeWith("system-shutdown", "")
	}
	for _, st := range waiting {
		f.bounce(st, "remote-server-timeout", "the server is shutting down")
	}
	return stream.Wait(ctx, &f.wg)
}

// Send takes a stanza for another domain (the router's remote route).
// It never blocks on the network: the stanza goes on the domain's link, or
// waits (bounded) for the link to come up.
func (f *Federation) Send(ctx context.Context, st *router.Stanza) {
	domain := st.To.Domainpart()
	k := pair{f.localOf(st.From), domain}
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		f.bounce(st, "remote-server-not-found", "federation is shutting down")
		return
	}
	r := f.remotes[k]
	if r == nil {
		if now := time.Now(); len(f.remotes) >= f.pruneAt || now.Sub(f.prunedAt) >= f.cfg.RetryAfter {
			f.pruneLocked(now)
		}
		r = &remote{local: k.local, domain: domain}
		f.remotes[k] = r
	}
	if s := r.out; s != nil {
		if s.send(st.Bytes()) {
			f.mu.Unlock()
			f.m.stanzasOut.Inc()
			return
		}
		r.out = nil
	}
	if time.Now().Before(r.failUntil) {
		cond := r.failCond
		f.mu.Unlock()
		f.bounce(st, cond, "")
		return
	}
	if len(r.queue) >= f.cfg.QueueSize || r.queued >= f.cfg.QueueBytes {
		f.mu.Unlock()
		f.bounce(st, "resource-constraint", "too many stanzas waiting for "+domain)
		return
	}
	r.queue = append(r.queue, st)
	r.queued += len(st.Bytes())
	if !r.dialing {
		r.dialing = true
		f.wg.Add(1)
		go f.connect(r)
	}
	f.mu.Unlock()
}

// connect brings up a link to r.domain, then sends what waited for it or
// answers it with the error.
func (f *Federation) connect(r *remote) {
	defer f.wg.Done()
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.ConnectTimeout)
	defer cancel()
	start := time.Now()
	s, err := f.dialAuthenticated(ctx, r.local, r.domain)
	f.mu.Lock()
	r.dialing = false
	if err != nil {
		cond := s2sCondition(err)
		r.failUntil, r.failCond = time.Now().Add(f.cfg.RetryAfter), cond
		waiting := r.queue
		r.queue, r.queued = nil, 0
		f.mu.Unlock()
		f.log.Warn("no link to remote domain", "domain", r.domain, "local", r.local, "err", err, "after", time.Since(start).Round(time.Millisecond), "bounced", len(waiting))
		for _, st := range waiting {
			f.bounce(st, cond, "")
		}
		return
	}
	if r.out == nil {
		r.out = s
	}
	out := r.out
	var unsent []*router.Stanza
	for _, st := range r.queue {
		if out.send(st.Bytes()) {
			f.m.stanzasOut.Inc()
		} else {
			unsent = append(unsent, st)
		}
	}
	if len(unsent) > 0 {
		r.out = nil
	}
	r.queue, r.queued = nil, 0
	f.mu.Unlock()
	for _, st := range unsent {
		f.bounce(st, "resource-constraint", "the link to "+r.domain+" does not keep up")
	}
	if out != s {
		// A bidirectional link from the peer came up meanwhile.
		s.closeWith("", "")
	}
}

// pruneLocked forgets the remote domains with nothing going on: no link,
// nothing waiting, no dial, no failure still answered from memory. Every
// domain ever written to would stay otherwise. Send runs it for a new
// domain when the table has doubled since the last time or RetryAfter
// has passed, so that its cost per new domain stays small. Hold f.mu.
func (f *Federation) pruneLocked(now time.Time) {
	f.prunedAt = now
	for d, r := range f.remotes {
		if r.out == nil && len(r.queue) == 0 && !r.dialing && !now.Before(r.failUntil) {
			delete(f.remotes, d)
		}
	}
	f.pruneAt = max(64, 2*len(f.remotes))
}

// setSender makes s the stream that stanzas from local to domain go on,
// unless one is in place (a bidirectional incoming link).
func (f *Federation) setSender(local, domain string, s *link) {
	f.mu.Lock()
	k := pair{local, domain}
	r := f.remotes[k]
	if r == nil {
		r = &remote{local: local, domain: domain}
		f.remotes[k] = r
	}
	if r.out == nil {
		r.out = s
	}
	f.mu.Unlock()
}

// bounce answers st with a stanza error of the given condition.
func (f *Federation) bounce(st *router.Stanza, cond, text string) {
	f.m.bounced.WithLabelValues(cond).Inc()
	typ := "cancel"
	if cond == "remote-server-timeout" || cond == "resource-constraint" {
		typ = "wait"
	}
	f.srv.Router.Bounce(st, router.NewError(stanza.ErrorType(typ), stanza.Condition(cond), text))
}

// s2sFailure is why a link could not be made: the stanza error condition
// for the senders and the cause.
type s2sFailure struct {
	cond string
	err  error
}

func (e *s2sFailure) Error() string { return e.cond + ": " + e.err.Error() }
func (e *s2sFailure) Unwrap() error { return e.err }

func s2sCondition(err error) string {
	var fe *s2sFailure
	if errors.As(err, &fe) {
		return fe.cond
	}
	return "remote-server-timeout"
}

// s2sTarget is one address to try for a domain.
type s2sTarget struct {
	addr   string
	direct bool // TLS from the first byte (XEP-0368)
}

// resolve finds where domain's server listens: a configured route, or
// DNS SRV for _xmpps-server and _xmpp-server (XEP-0368: one list by
// priority, direct TLS first among equals), or the domain itself on 5269.
func (f *Federation) resolve(ctx context.Context, domain string) ([]s2sTarget, error) {
	if addr, ok := f.cfg.Routes[domain]; ok {
		return []s2sTarget{{addr: addr}}, nil
	}
	type rec struct {
		srv    *net.SRV
		direct bool
	}
	var recs []rec
	explicitNone := false
	for _, svc := range []struct {
		name   string
		direct bool
	}{{"xmpps-server", true}, {"xmpp-server", false}} {
		_, srvs, err := f.lookupSRV(ctx, svc.name, "tcp", domain)
		if err != nil {
			continue // no records: the fallback below
		}
		for _, s := range srvs {
			if s.Target == "." || s.Target == "" {
				explicitNone = true
				continue
			}
			recs = append(recs, rec{s, svc.direct})
		}
	}
	if len(recs) == 0 {
		if explicitNone {
			return nil, &s2sFailure{"remote-server-not-found", fmt.Errorf("%s: SRV says the service is not available", domain)}
		}
		return []s2sTarget{{addr: net.JoinHostPort(domain, "5269")}}, nil
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].srv.Priority < recs[j].srv.Priority })
	out := make([]s2sTarget, len(recs))
	for i, r := range recs {
		host := strings.TrimSuffix(r.srv.Target, ".")
		out[i] = s2sTarget{addr: net.JoinHostPort(host, strconv.Itoa(int(r.srv.Port))), direct: r.direct}
	}
	return out, nil
}

// dial opens a stream to domain, secured as the policy requires, and
// returns it after the features that follow TLS. A server that cannot be
// reached (no address connects, in time or at all) is
// remote-server-not-found; a link that fails later, the TLS and
// certificate rules included, is remote-server-timeout (SPEC.md).
func (f *Federation) dial(ctx context.Context, local, domain string) (*link, *s2sFeatures, error) {
	targets, err := f.resolve(ctx, domain)
	if err != nil {
		return nil, nil, err
	}
	var (
		lastErr error
		reached bool
	)
	for _, t := range targets {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		reached = true
		s := f.newLink(nc, true)
		s.peer, s.local = domain, local
		s.ip = stream.RemoteIP(nc)
		if !f.track(s) {
			nc.Close()
			return nil, nil, &s2sFailure{"remote-server-not-found", errors.New("shutting down")}
		}
		feats, err := s.negotiateOut(ctx, t.direct)
		if err == nil {
			return s, feats, nil
		}
		s.fail(err)
		lastErr = fmt.Errorf("%s: %w", t.addr, err)
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no address")
	}
	if !reached {
		// Not resolved, refused or no answer in time: cannot be reached.
		return nil, nil, &s2sFailure{"remote-server-not-found", lastErr}
	}
	return nil, nil, &s2sFailure{"remote-server-timeout", lastErr}
}

// dialAuthenticated opens an outgoing link from local to domain,
// authenticated as local, and starts reading from it.
func (f *Federation) dialAuthenticated(ctx context.Context, local, domain string) (*link, error) {
	s, feats, err := f.dial(ctx, local, domain)
	if err != nil {
		return nil, err
	}
	method, err := s.authenticateOut(ctx, feats)
	if err != nil {
		s.fail(err)
		return nil, &s2sFailure{"remote-server-timeout", err}
	}
	f.m.auth.WithLabelValues("out", method, "ok").Inc()
	s.established(method)
	go s.serveOutgoing()
	return s, nil
}

// clientTLS is the TLS configuration for links we open to domain. The
// certificate is checked by checkPeer, not by crypto/tls, because the
// identity wanted is an XMPP one (RFC 6125, RFC 7590).
func (f *Federation) clientTLS(domain string, direct bool) *tls.Config {
	base := f.srv.TLS
	cfg := &tls.Config{
		ServerName:         domain,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
	}
	if len(base.Certificates) > 0 {
		cert := base.Certificates[0]
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if direct {
		cfg.NextProtos = []string{"xmpp-server"}
	}
	return cfg
}

// serverTLS is the TLS configuration for links peers open to us: a client
// certificate is asked for (SASL EXTERNAL), never required.
func (f *Federation) serverTLS() *tls.Config {
	cfg := f.srv.TLS.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.ClientAuth = tls.RequestClientCert
	cfg.NextProtos = []string{"xmpp-server"}
	return cfg
}

// s2sMetrics are the federation's Prometheus metrics.
type s2sMetrics struct {
	links      *prometheus.GaugeVec   // authenticated links by direction
	auth       *prometheus.CounterVec // authentications by direction, method, result
	stanzasIn  prometheus.Counter
	stanzasOut prometheus.Counter
	bounced    *prometheus.CounterVec // stanzas answered with an error, by condition
	rejected   *prometheus.CounterVec // streams closed for a peer's misbehaviour, by condition
}

func newS2SMetrics(reg prometheus.Registerer) *s2sMetrics {
	m := &s2sMetrics{
		links: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xmppd_s2s_links", Help: "Authenticated server-to-server links, by direction.",
		}, []string{"direction"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_s2s_auth_total", Help: "Server-to-server authentications by direction, method (external, dialback) and result.",
		}, []string{"direction", "method", "result"}),
		stanzasIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmppd_s2s_stanzas_in_total", Help: "Stanzas accepted from other servers.",
		}),
		stanzasOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmppd_s2s_stanzas_out_total", Help: "Stanzas queued to other servers.",
		}),
		bounced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_s2s_bounced_total", Help: "Stanzas to other servers answered with an error, by condition.",
		}, []string{"condition"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmppd_s2s_rejected_total", Help: "Server-to-server streams closed for the peer's misbehaviour, by stream error condition.",
		}, []string{"condition"}),
	}
	if reg != nil {
		reg.MustRegister(m.links, m.auth, m.stanzasIn, m.stanzasOut, m.bounced, m.rejected)
	}
	return m
}

// RemoteDomains is how many remote domains the federation keeps state
// for, counted once per domain served here that writes to them.
func (f *Federation) RemoteDomains() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.remotes)
}
