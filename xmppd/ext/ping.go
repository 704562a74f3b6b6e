package ext

import (
	"context"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/ping"
)

// Ping answers XMPP pings (XEP-0199) addressed to the server and, on their
// behalf, to the bare JIDs of local numbers with an empty result. Pings the
// server sends to clients are the core's business.
type Ping struct {
	r router.Routing
}

// NewPing returns the ping module.
func NewPing(r router.Routing) *Ping { return &Ping{r: r} }

// Register adds the urn:xmpp:ping handlers and advertises the feature.
func (p *Ping) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, name(ping.NS, "ping"), p.server)
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, name(ping.NS, "ping"), p.account)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, ping.NS)
	return nil
}

func (p *Ping) server(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	return nil, nil
}

func (p *Ping) account(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	// Every valid number answers, account or not: RFC 6121 §8.5.1 would
	// have service-unavailable for a missing account, but whether a number
	// has an account is not visible to other users here (SPEC.md).
	return nil, nil
}
