// Package extdisco serves External Service Discovery (XEP-0215) on the
// domain: the STUN and TURN servers of XMPPD_TURN_URIS, with TURN
// credentials made fresh for each request (package turn), so that calls
// between clients find a relay.
package extdisco

import (
	"context"
	"encoding/xml"
	"strconv"
	"time"

	"dialtone/turn"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/stanza"
)

// NS is XEP-0215's namespace.
const NS = "urn:xmpp:extdisco:2"

// Module answers <services/> and <credentials/> requests to the domain.
type Module struct {
	r       router.Routing
	servers *turn.Servers
	// Now is the clock of the credentials; nil: time.Now.
	Now func() time.Time
}

// New returns the module; servers may list nothing, and then the
// module registers nothing (the feature is not advertised).
func New(r router.Routing, servers *turn.Servers) *Module { return &Module{r: r, servers: servers} }

// Register adds the handlers and the feature when there are servers.
func (m *Module) Register(h *router.Hooks) error {
	if m.servers == nil || len(m.servers.URIs) == 0 {
		return nil
	}
	h.HandleIQ(router.ScopeServer, router.IQGet, xml.Name{Space: NS, Local: "services"}, m.services)
	h.HandleIQ(router.ScopeServer, router.IQGet, xml.Name{Space: NS, Local: "credentials"}, m.credentials)
	h.AddFeature(router.ScopeServer, NS)
	return nil
}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// user is the account asking: only the server's own accounts get
// credentials of its relays.
func (m *Module) user(iq *router.Stanza) (string, error) {
	if iq.From.Domainpart() != m.r.Domain() || iq.From.Localpart() == "" {
		return "", router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	return iq.From.Localpart(), nil
}

// services answers "Requesting All Services" (XEP-0215 §3.1), filtered
// by the request's type attribute when it has one.
func (m *Module) services(_ context.Context, iq *router.Stanza) ([]byte, error) {
	user, err := m.user(iq)
	if err != nil {
		return nil, err
	}
	_, start, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	typ, _ := payload.Attr(start, "type")
	var list []turn.Service
	for _, s := range m.servers.Services(m.now(), user) {
		if typ == "" || s.Type == typ {
			list = append(list, s)
		}
	}
	return answer("services", typ, list), nil
}

// credentials answers "Requesting Credentials" (XEP-0215 §3.3) for the
// one service named by host, type and port.
func (m *Module) credentials(_ context.Context, iq *router.Stanza) ([]byte, error) {
	user, err := m.user(iq)
	if err != nil {
		return nil, err
	}
	r, _, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	svc, ok, err := payload.NextChild(r)
	if err != nil || !ok || svc.Name.Local != "service" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "a credentials request names one service")
	}
	host, _ := payload.Attr(svc, "host")
	typ, _ := payload.Attr(svc, "type")
	port := 0
	if p, ok := payload.Attr(svc, "port"); ok {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "port is not a number")
		}
	}
	list := m.servers.Credentials(m.now(), user, host, typ, port)
	if len(list) == 0 {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	return answer("credentials", "", list), nil
}

// answer writes <local xmlns=NS type=typ> with one <service/> each.
func answer(local, typ string, list []turn.Service) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS(local, NS, "type", typ)
	for _, s := range list {
		b.Start("service", "type", s.Type, "host", s.Host, "port", strconv.Itoa(s.Port), "transport", s.Transport)
		if s.Username != "" {
			b.Attr("username", s.Username).Attr("password", s.Password).
				Attr("expires", s.Expires.UTC().Format(time.RFC3339)).Attr("restricted", "1")
		}
		b.End()
	}
	return b.End().Bytes()
}
