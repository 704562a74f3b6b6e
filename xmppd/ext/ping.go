package ext

import (
	"context"

	"dialtone/xmppd"

	"mellium.im/xmpp/ping"
)

// Ping answers XMPP pings (XEP-0199) addressed to the server and, on their
// behalf, to the bare JIDs of local numbers with an empty result. Pings the
// server sends to clients are the core's business.
type Ping struct {
	r xmppd.Router
}

// NewPing returns the ping module.
func NewPing(r xmppd.Router) *Ping { return &Ping{r: r} }

// Register adds the urn:xmpp:ping handlers.
func (p *Ping) Register(mux *xmppd.Mux) {
	mux.HandleIQ(xmppd.ScopeServer, name(ping.NS, "ping"), p.server)
	mux.HandleIQ(xmppd.ScopeAccount, name(ping.NS, "ping"), p.account)
}

func (p *Ping) server(_ context.Context, iq *xmppd.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	return nil, nil
}

func (p *Ping) account(_ context.Context, iq *xmppd.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	// Every valid number answers, account or not: RFC 6121 §8.5.1 would
	// have service-unavailable for a missing account, but whether a number
	// has an account is not visible to other users here (SPEC.md).
	return nil, nil
}
