package xmppd_test

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
)

// memAccounts is an in-memory auth.Accounts for the core's tests.
type memAccounts struct {
	mu sync.Mutex
	m  map[auth.Number]auth.Account
}

func newMemAccounts() *memAccounts { return &memAccounts{m: map[auth.Number]auth.Account{}} }

func (a *memAccounts) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return auth.Account{}, auth.ErrNotFound
	}
	return acc, nil
}

func (a *memAccounts) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (bool, error) {
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

func (a *memAccounts) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
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

func (a *memAccounts) DeleteAccount(ctx context.Context, n auth.Number) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[n]; !ok {
		return auth.ErrNotFound
	}
	delete(a.m, n)
	return nil
}

func (a *memAccounts) ListAccounts(ctx context.Context, st auth.State) ([]auth.Account, error) {
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

// testServer is a running server on loopback.
type testServer struct {
	*xmppd.Server
	addr, directAddr string
	accounts         *memAccounts
	parser           *auth.NumberParser
}

type serverOpt func(*xmppd.Config)

func startServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := newMemAccounts()
	cfg := xmppd.Config{
		Domain:   "localhost",
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		SASL:     &auth.SASL{Parser: parser, Store: accounts, Lockout: auth.NewLockout(5), Domain: "localhost"},
		Parser:   parser,
		Accounts: accounts,
		Mux:      &xmppd.Mux{},
	}
	cfg.Mux.HandleIQ(xmppd.ScopeServer|xmppd.ScopeAccount, xml.Name{Space: "urn:xmpp:ping", Local: "ping"},
		func(ctx context.Context, iq *xmppd.Stanza) ([]byte, error) { return nil, nil })
	srvRef := new(*xmppd.Server)
	cfg.Mux.HandlePresence(&selfPresence{srv: srvRef})
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := xmppd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	*srvRef = srv
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
	return &testServer{Server: srv, addr: l.Addr().String(), directAddr: dl.Addr().String(), accounts: accounts, parser: parser}
}

// account makes an account with a password and returns the password.
func (ts *testServer) account(t testing.TB, number string) string {
	t.Helper()
	n, err := ts.parser.Parse(number)
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
	if _, err := ts.accounts.SetCredentials(context.Background(), n, creds); err != nil {
		t.Fatal(err)
	}
	return pass
}

func mustJID(s string) jid.JID { return jid.MustParse(s) }

// selfPresence is the least presence handling the core's tests need:
// a session's own broadcast presence is recorded so that it counts as
// available. (Package im does the real RFC 6121 work.)
type selfPresence struct{ srv **xmppd.Server }

func (p *selfPresence) OutboundPresence(ctx context.Context, st *xmppd.Stanza) {
	if !st.To.Equal(jid.JID{}) {
		return
	}
	if st.Type == "unavailable" {
		(*p.srv).SetPresence(st.From, nil)
	} else if st.Type == "" {
		(*p.srv).SetPresence(st.From, st)
	}
}
func (p *selfPresence) InboundPresence(ctx context.Context, st *xmppd.Stanza)     {}
func (p *selfPresence) SessionClosed(ctx context.Context, info xmppd.SessionInfo) {}
