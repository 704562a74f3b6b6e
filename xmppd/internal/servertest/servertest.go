// Package servertest starts an xmppd.Server on loopback for the tests of
// the server and of its modules: in-memory accounts, a self-signed
// certificate, the modules the test asks for.
package servertest

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/internal/tlscert"
	"dialtone/xmppd"
	"dialtone/xmppd/router"
)

// Domain is the domain the test servers serve.
const Domain = "localhost"

// MemAccounts is an in-memory auth.Accounts.
type MemAccounts struct {
	mu sync.Mutex
	m  map[auth.Number]auth.Account
}

// NewMemAccounts returns an empty store.
func NewMemAccounts() *MemAccounts { return &MemAccounts{m: map[auth.Number]auth.Account{}} }

// Account implements auth.Accounts.
func (a *MemAccounts) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return auth.Account{}, auth.ErrNotFound
	}
	return acc, nil
}

// SetCredentials implements auth.Accounts.
func (a *MemAccounts) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		acc = auth.Account{Number: n, State: auth.StateUnclaimed, Created: time.Now()}
	}
	acc.Credentials = c
	acc.Generation++
	a.m[n] = acc
	return !ok, nil
}

// RecordLogin implements auth.Accounts.
func (a *MemAccounts) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return auth.ErrNotFound
	}
	acc.State, acc.LastLogin = auth.StateActive, t
	a.m[n] = acc
	return nil
}

// DeleteAccount implements auth.Accounts.
func (a *MemAccounts) DeleteAccount(ctx context.Context, n auth.Number) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[n]; !ok {
		return auth.ErrNotFound
	}
	delete(a.m, n)
	return nil
}

// ListAccounts implements auth.Accounts.
func (a *MemAccounts) ListAccounts(ctx context.Context, st auth.State) ([]auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auth.Account
	for _, acc := range a.m {
		if st == "" || acc.State == st {
			out = append(out, acc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// Server is a running server on loopback.
type Server struct {
	*xmppd.Server
	// Addr is the c2s (STARTTLS) listener, DirectAddr the direct TLS one.
	Addr, DirectAddr string
	Accounts         *MemAccounts
	Parser           *auth.NumberParser
}

// Config is a test server's configuration, as the test may change it.
type Config struct {
	xmppd.Config
	// Modules are loaded in order; Basic unless the test sets them.
	Modules []router.Module
}

// Option changes a test server's configuration.
type Option func(*Config)

// With loads mods after the basic ones (ping, the least presence).
func With(mods ...router.Module) Option {
	return func(c *Config) { c.Modules = append(c.Modules, mods...) }
}

// Basic are the modules the core's tests need: ping (which xmpptest's
// Sync uses) and SelfPresence.
func Basic() []router.Module { return []router.Module{Ping{}, SelfPresence{}} }

// Start starts a server for Domain with Basic modules, then opts.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cert, err := tlscert.New(Domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := NewMemAccounts()
	cfg := Config{Config: xmppd.Config{
		Domain:   Domain,
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		SASL:     &auth.SASL{Parser: parser, Store: accounts, Lockout: auth.NewLockout(5), Domain: Domain},
		Parser:   parser,
		Accounts: accounts,
	}, Modules: Basic()}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := xmppd.NewServer(cfg.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(cfg.Modules...); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeC2S(l)
	go srv.ServeDirectTLS(dl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &Server{Server: srv, Addr: l.Addr().String(), DirectAddr: dl.Addr().String(), Accounts: accounts, Parser: parser}
}

// Account makes an account with a new password and returns the password.
func (s *Server) Account(t testing.TB, number string) string {
	t.Helper()
	return NewAccount(t, s.Accounts, s.Parser, number)
}

// NewAccount makes an account of number in accounts with a new password
// and returns the password.
func NewAccount(t testing.TB, accounts *MemAccounts, parser *auth.NumberParser, number string) string {
	t.Helper()
	n, err := parser.Parse(number)
	if err != nil {
		t.Fatal(err)
	}
	pass, err := auth.GeneratePassword(12)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.NewCredentials(pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.SetCredentials(context.Background(), n, creds); err != nil {
		t.Fatal(err)
	}
	return pass
}

// Ping answers urn:xmpp:ping to the server and to accounts (package
// mod/ping does it for real).
type Ping struct{}

// Register implements router.Module.
func (Ping) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer|router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: "urn:xmpp:ping", Local: "ping"},
		func(ctx context.Context, iq *router.Stanza) ([]byte, error) { return nil, nil })
	return nil
}

// SelfPresence is the least presence handling the core's tests need: a
// session's own broadcast presence is recorded so that it counts as
// available. (Package mod/presence does the real RFC 6121 work.)
type SelfPresence struct{}

// Register implements router.Module.
func (SelfPresence) Register(h *router.Hooks) error {
	r := h.Router()
	h.Hook(router.PresenceOut, router.Presences, 0, func(ctx context.Context, ev *router.Event) error {
		st := ev.Stanza
		if !st.To.Equal(jid.JID{}) || ev.Origin == nil {
			return nil
		}
		if st.Type == "unavailable" {
			r.SetPresence(ctx, ev.Origin, nil)
		} else if st.Type == "" {
			r.SetPresence(ctx, ev.Origin, st)
		}
		return nil
	})
	return nil
}
