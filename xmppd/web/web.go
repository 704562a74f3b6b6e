// Package web is the server's HTTP side: the home page where people get a
// password by SMS and manage their account, the password API, health and
// metrics, XMPP over WebSocket and its XEP-0156 discovery (host-meta).
package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/upload"
)

// healthTimeout bounds one health check, so that a stuck store makes
// /healthz answer 503 instead of hanging the prober.
const healthTimeout = 5 * time.Second

// PasswordRequester texts a fresh password to a number (SPEC.md "HTTP",
// POST /api/v1/password). Implemented by sms.Passwords.
type PasswordRequester interface {
	// Request texts a new password to phone, written in any accepted form,
	// on behalf of the client at ip. Errors match auth.ErrInvalidNumber
	// (and auth.ErrCannotReceiveSMS) for numbers that are not addresses;
	// a throttled request returns a *sms.ThrottledError (or any error
	// that is a Throttled).
	Request(ctx context.Context, phone, ip string) error
}

// Throttled is recognised, besides *sms.ThrottledError, as a rate limit's
// refusal from PasswordRequester.Request; RetryAfterDuration says when
// asking again can succeed.
type Throttled interface {
	error
	RetryAfterDuration() time.Duration
}

// AccountSource is the part of the account store the web login needs.
type AccountSource interface {
	// Account returns the stored account for n, or auth.ErrNotFound.
	Account(ctx context.Context, n auth.Number) (auth.Account, error)
	// RecordLogin marks a successful login at t.
	RecordLogin(ctx context.Context, n auth.Number, t time.Time) error
}

// OfflineCounter counts the messages stored for an account.
type OfflineCounter interface {
	// CountOffline returns how many messages owner (a canonical number)
	// has waiting.
	CountOffline(ctx context.Context, owner string) (int, error)
}

// ClientPort is one port an XMPP client can connect to.
type ClientPort struct {
	Port int
	// DirectTLS: TLS from the first byte (XEP-0368); otherwise STARTTLS.
	DirectTLS bool
}

// ClientInfo is what the account page tells people to type into an XMPP
// client.
type ClientInfo struct {
	// Host is the server's host name; empty means the domain.
	Host  string
	Ports []ClientPort
	// Fingerprint is the SHA-256 fingerprint of a self-signed certificate
	// (tlscert.Fingerprint); empty when the certificate is signed by a CA.
	Fingerprint string
}

// Options are what the HTTP handler serves. Only Health, Gatherer and
// MetricsAllow are needed for /healthz and /metrics; without Passwords
// the API answers 503,
// and without Parser, Accounts, Passwords and SecretKey the home page says
// that the service is not configured.
type Options struct {
	// Health reports whether the server and its store are up; nil means
	// always up.
	Health func(ctx context.Context) error
	// Gatherer supplies /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// MetricsAllow are the networks whose clients may read /metrics
	// (XMPPD_METRICS_ALLOW); others get 404. None: nobody may.
	MetricsAllow []netip.Prefix

	// PublicURL is the base URL clients reach this handler at
	// (XMPPD_PUBLIC_URL): host-meta links to its /xmpp-websocket, and an
	// https one makes cookies Secure. Empty: no host-meta.
	PublicURL string
	// TrustedProxies are the networks whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (XMPPD_TRUSTED_PROXIES); see package
	// forwarded. Every per-IP limit counts the client IP they give.
	TrustedProxies []netip.Prefix

	// Domain is the XMPP domain: JIDs are number@Domain.
	Domain string
	// Parser reads the numbers people type.
	Parser *auth.NumberParser
	// Passwords texts passwords, for the API and the home page.
	Passwords PasswordRequester
	// Accounts is where login checks the password.
	Accounts AccountSource
	// PromotePending makes a pending password (one requested, not yet
	// used) current when it logs in (SPEC.md "HTTP"); nil: pending
	// passwords do not log in here.
	PromotePending auth.PromoteFunc
	// Lockout counts failed logins per number; the same one XMPP logins
	// use, so that the web page is no way around it. Nil: no lockout.
	Lockout *auth.Lockout
	// IPLockout counts failed logins per client IP, keyed "ip:ADDR"; the
	// same one XMPP logins use (xmppd.Config.IPLockout), so that failures
	// on either side lock both. Nil: no per-IP lockout.
	IPLockout *auth.Lockout
	// Offline counts waiting messages for the account page; nil hides it.
	Offline OfflineCounter
	// SetFullName sets the display name (vCard FN) of owner, a canonical
	// number; nil hides the form.
	SetFullName func(ctx context.Context, owner, fn string) error
	// FullName reads the display name back, to show it in the form; nil:
	// the field starts empty.
	FullName func(ctx context.Context, owner string) (string, error)
	// ChangePassword stores new credentials for n and closes the
	// account's XMPP sessions; nil hides the form.
	ChangePassword func(ctx context.Context, n auth.Number, c auth.Credentials) error
	// SecretKey signs session cookies and form tokens (at least 16 bytes;
	// XMPPD_SECRET_KEY).
	SecretKey []byte
	// Client is shown on the account page.
	Client ClientInfo
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives errors that the visitor only sees as "try again later";
	// nil discards them.
	Log *slog.Logger
	// WebSocket serves XMPP over WebSocket (RFC 7395) at
	// GET /xmpp-websocket (xmppd.Server.ServeWebSocket), advertised by
	// GET /.well-known/host-meta and host-meta.json; nil serves none of
	// them.
	WebSocket http.HandlerFunc
	// App serves the app API, GET /authentication/NUMBER and POST
	// /password (SPEC.md "App API"); it shares Lockout and IPLockout.
	// Nil (XMPPD_APP_API=false): both paths are 404.
	App AppAPI
	// Upload serves HTTP File Upload (XEP-0363) below upload.Path: the
	// PUT and GET of slots (upload.Service); nil serves nothing there.
	Upload http.Handler

	// WebClient serves the web chat client at GET /chat
	// (XMPPD_WEB_CLIENT); it needs WebSocket and PublicURL.
	WebClient bool
	// Tickets keeps the web client's single-use logins, with which a
	// browser logged in here opens /chat without the password again; nil:
	// /chat logs in with its form only.
	Tickets TicketStore
	// Links are the one-tap login links of password SMS, opened at
	// GET /l/TOKEN; nil: none are served.
	Links LinkStore
	// Discovery is the account's opt-out of contact discovery (SPEC.md
	// "App API"), a switch on the account page; nil hides it.
	Discovery DiscoverySetting
}

// DiscoverySetting reads and sets whether an account opted out of
// contact discovery. Implemented by package storage.
type DiscoverySetting interface {
	// Hidden reports whether n opted out.
	Hidden(ctx context.Context, n auth.Number) (bool, error)
	// SetHidden opts n out (true) or back in.
	SetHidden(ctx context.Context, n auth.Number, hidden bool) error
}

// New returns the handler for XMPPD_HTTP_ADDR: the home page and account
// pages, POST /api/v1/password, GET /healthz (200 "ok" when Health returns
// nil and 503 "unavailable" otherwise) and GET /metrics in the Prometheus
// text format.
func New(opts Options) http.Handler {
	g := opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	public, _ := url.Parse(opts.PublicURL)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz(opts.Health, opts.Log))
	mux.Handle("GET /metrics", allowOnly(opts.MetricsAllow, promhttp.HandlerFor(g, promhttp.HandlerOpts{})))
	mux.Handle("/api/v1/password", secure(&passwordAPI{opts: opts}))
	registerAppAPI(mux, opts)
	if opts.WebSocket != nil {
		mux.HandleFunc("GET "+webSocketPath, opts.WebSocket)
		if public != nil && public.Host != "" {
			mux.HandleFunc("GET /.well-known/host-meta", hostMeta(public, len(opts.TrustedProxies) > 0, false))
			mux.HandleFunc("GET /.well-known/host-meta.json", hostMeta(public, len(opts.TrustedProxies) > 0, true))
		}
	}
	if opts.Upload != nil {
		// Its own headers (CORS for web clients elsewhere, nosniff and a
		// CSP for what it serves), not the pages' ones.
		mux.Handle(upload.Path, opts.Upload)
	}
	if public != nil && public.Host == "" {
		public = nil
	}
	newSite(opts, public).register(mux)
	return forwarded.Handler(opts.TrustedProxies, mux)
}

// healthz answers "ok" or "unavailable" and nothing else: why the store
// is down (host names, SQL errors) is for the log, not for whoever asks.
func healthz(check func(context.Context) error, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := check(ctx); err != nil {
				log.Warn("health check failed", "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("unavailable"))
				return
			}
		}
		w.Write([]byte("ok"))
	}
}

// allowOnly serves h to clients in networks and 404 to the others, as if
// there were nothing here.
func allowOnly(networks []netip.Prefix, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !forwarded.Allowed(forwarded.ClientOf(r).IP, networks) {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// secure adds the headers every page and API answer carries: nothing is
// framed, sniffed, cached or leaks its address to other sites, and the
// pages run no script at all.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
