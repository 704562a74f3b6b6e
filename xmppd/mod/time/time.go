// Package time answers entity time requests (XEP-0202) to the server: the
// server's clock, in UTC.
//
// It is the worked example of ARCHITECTURE.md ("How to add a XEP"): a type
// whose Register asks the router for an IQ handler and a disco feature,
// and one line in the daemon's module list.
package time

import (
	"context"
	"encoding/xml"
	"time"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// NS is the namespace of XEP-0202 Entity Time.
const NS = "urn:xmpp:time"

// Module answers <time xmlns='urn:xmpp:time'/> sent to the server.
type Module struct {
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// New returns the module.
func New() *Module { return &Module{} }

// Register answers iq get of entity time addressed to the server and
// advertises the feature there. (A set is answered service-unavailable,
// as for any iq nobody handles.)
func (m *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQGet, xml.Name{Space: NS, Local: "time"}, m.handle)
	h.AddFeature(router.ScopeServer, NS)
	return nil
}

func (m *Module) handle(context.Context, *router.Stanza) ([]byte, error) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	t := now().UTC()
	// XEP-0202 §3: the offset from UTC (XEP-0082 TZD) and the time in UTC.
	b := wire.NewBuilder(nil)
	b.StartNS("time", NS).Element("tzo", "", "+00:00").Element("utc", "", t.Format("2006-01-02T15:04:05.000Z"))
	return b.End().Bytes(), nil
}
