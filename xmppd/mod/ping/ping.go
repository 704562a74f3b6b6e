// Package ping answers XMPP pings (XEP-0199) to the server and to
// accounts.
package ping

import (
	"context"
	"encoding/xml"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"
)

// Module answers XMPP pings (XEP-0199) addressed to the server and, on their
// behalf, to the bare JIDs of local numbers with an empty result. Pings the
// server sends to clients are the core's business.
type Module struct {
	r router.Routing
}

// New returns the ping module.
func New(r router.Routing) *Module { return &Module{r: r} }

// Register adds the urn:xmpp:ping handlers and advertises the feature.
func (p *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, xml.Name{Space: ping.NS, Local: "ping"}, p.server)
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: ping.NS, Local: "ping"}, p.account)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, ping.NS)
	return nil
}

func (p *Module) server(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	return nil, nil
}

func (p *Module) account(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	// Every valid number answers, account or not: RFC 6121 §8.5.1 would
	// have service-unavailable for a missing account, but whether a number
	// has an account is not visible to other users here (SPEC.md).
	return nil, nil
}
