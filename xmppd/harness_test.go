package xmppd_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/router"
)

// memAccounts is an in-memory auth.Accounts for the core's tests.
type memAccounts = servertest.MemAccounts

func newMemAccounts() *memAccounts { return servertest.NewMemAccounts() }

// testServer is a running server on loopback.
type testServer struct {
	*xmppd.Server
	addr, directAddr string
	accounts         *memAccounts
	parser           *auth.NumberParser
}

type serverOpt func(*xmppd.Config)

// startServer starts a server with the basic modules (ping, the least
// presence) and the config changes of opts.
func startServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts...)
}

// startServerWith starts a server with the basic modules and mods.
func startServerWith(t testing.TB, mods []router.Module, opts ...serverOpt) *testServer {
	t.Helper()
	s := servertest.Start(t, servertest.With(mods...), func(c *servertest.Config) {
		for _, o := range opts {
			o(&c.Config)
		}
	})
	return &testServer{Server: s.Server, addr: s.Addr, directAddr: s.DirectAddr, accounts: s.Accounts, parser: s.Parser}
}

// account makes an account with a password and returns the password.
func (ts *testServer) account(t testing.TB, number string) string {
	t.Helper()
	return servertest.NewAccount(t, ts.accounts, ts.parser, number)
}

func mustJID(s string) jid.JID { return jid.MustParse(s) }
