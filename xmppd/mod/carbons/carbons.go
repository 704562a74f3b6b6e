// Package carbons is Message Carbons (XEP-0280): a session that enabled
// carbons gets a copy of the eligible messages its account receives on
// another resource (<received/>) and of those another resource of the
// account sends (<sent/>).
//
// The state is one flag per session plus a count of flagged sessions, so
// that while no one uses carbons the hooks cost one atomic load per
// message, and otherwise a walk over the account's session list; the
// store is never touched.
package carbons

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"sync/atomic"

	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Namespaces.
const (
	// NS is the namespace of XEP-0280 Message Carbons.
	NS = "urn:xmpp:carbons:2"
	// NSForward is the namespace of XEP-0297 Stanza Forwarding.
	NSForward = "urn:xmpp:forward:0"
	// NSHints is the namespace of XEP-0334 Message Processing Hints.
	NSHints = "urn:xmpp:hints"
)

// enabled is a session's carbons flag.
var enabled = router.NewKey[atomic.Bool]()

// Module is the carbons module. The zero value is ready to Register.
type Module struct {
	r  router.Routing
	on atomic.Int64 // sessions with carbons enabled

	// Changed, when set, is told when a local session turns carbons on or
	// off (a cluster shows it on the session's mirrors on other nodes).
	Changed func(s *router.Session, on bool)
}

// New returns the module.
func New() *Module { return &Module{} }

// Register answers <enable/> and <disable/> for the sender's own account
// (to the server, to its bare JID or to no one), advertises the feature
// on the server, copies messages as they are sent and delivered, and
// forgets a session's flag when it closes.
func (m *Module) Register(h *router.Hooks) error {
	m.r = h.Router()
	h.HandleIQ(router.ScopeServer|router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS}, m.iq)
	h.AddFeature(router.ScopeServer, NS)
	h.Hook(router.PreRoute, router.Messages, 0, m.sent)
	h.Hook(router.Delivered, router.Messages, 0, m.received)
	h.OnSession(router.Closed, 0, func(_ context.Context, s *router.Session) { m.set(s, false) })
	// Bind2 (XEP-0386 §6): <enable/> inside the bind request turns
	// carbons on for the new session before the client learns its JID.
	h.HandleInline(router.InlineBind, xml.Name{Space: NS}, m.inlineEnable)
	return nil
}

// inlineEnable enables carbons for a session that asked inline in its
// Bind2 request, and answers <enabled/> in <bound/>.
func (m *Module) inlineEnable(_ context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	if c.Session == nil || el.Name.Local != "enable" {
		return nil, nil
	}
	m.set(c.Session, true)
	return wire.NewBuilder(nil).Element("enabled", NS, "").Bytes(), nil
}

// set turns carbons on or off for s and keeps the count.
func (m *Module) set(s *router.Session, on bool) {
	flag := enabled.Get(s)
	if flag.Swap(on) != on {
		if on {
			m.on.Add(1)
		} else {
			m.on.Add(-1)
		}
		if m.Changed != nil && !s.Remote() {
			m.Changed(s, on)
		}
	}
}

// SetMirror turns carbons on or off for the mirror of a session on
// another node of a cluster (router.Session.Remote), as that node said:
// copies for it are then made here and sent there.
func (m *Module) SetMirror(s *router.Session, on bool) {
	if s.Remote() {
		m.set(s, on)
	}
}

// iq answers <enable/> and <disable/> (XEP-0280 §4, §5).
func (m *Module) iq(_ context.Context, iq *router.Stanza) ([]byte, error) {
	// Only for the sender's own account, and from a local session: any
	// other address answers as if nobody served the namespace there.
	own := iq.To.Equal(iq.From.Bare()) || iq.To.Equal(iq.To.Domain()) && iq.To.Domainpart() == m.r.Domain()
	s := m.r.Session(iq.From)
	if !own || s == nil {
		return nil, router.NewError(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	switch {
	case iq.Type != "set":
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "carbons are enabled and disabled with iq of type set")
	case iq.Payload.Local == "enable":
		m.set(s, true)
	case iq.Payload.Local == "disable":
		m.set(s, false)
	default:
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	return nil, nil
}

// eligible reports whether a message may be copied (XEP-0280 §6): type
// chat, or normal with a body; never one marked <private/> or <no-copy/>,
// nor one that is itself a carbon.
func eligible(st *router.Stanza) bool {
	chat := st.Type == "chat"
	if !chat && st.Type != "normal" && st.Type != "" {
		return false // groupchat, headline, error
	}
	if chat && !bytes.Contains(st.Inner, []byte(NS)) && !bytes.Contains(st.Inner, []byte(NSHints)) {
		return true
	}
	if !chat && !bytes.Contains(st.Inner, []byte("body")) {
		return false
	}
	// The rare case: look at the children for real.
	d := xml.NewDecoder(bytes.NewReader(st.Wrapped()))
	depth, body := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			switch {
			case t.Name.Space == NS: // <private/>, <received/>, <sent/>
				return false
			case t.Name.Space == NSHints && t.Name.Local == "no-copy":
				return false
			case t.Name.Space == router.NSClient && t.Name.Local == "body":
				body = true
			}
		case xml.EndElement:
			depth--
		}
	}
	return chat || body
}

// carbon returns the copy of st for the resource to, wrapped in
// <received/> or <sent/> (dir) and <forwarded/>, from the bare JID of the
// account.
func carbon(st *router.Stanza, bare, to, dir string) []byte {
	b := wire.NewBuilder(make([]byte, 0, len(st.Inner)+256))
	b.Start("message", "from", bare, "to", to, "type", st.Type)
	b.StartNS(dir, NS)
	b.StartNS("forwarded", NSForward)
	st.WriteTo(b, router.NSClient)
	return b.Bytes()
}

// received copies a message just delivered to some sessions of its
// account to the account's other sessions that enabled carbons.
func (m *Module) received(_ context.Context, ev *router.Event) error {
	if m.on.Load() == 0 {
		return nil
	}
	st := ev.Stanza
	from, checked := "", false
	for _, s := range m.r.Sessions(st.To.Bare()) {
		if !enabled.Get(s).Load() || got(ev.Delivered, s) {
			continue
		}
		if !checked {
			if !eligible(st) {
				return nil
			}
			checked, from = true, st.FromString()
		}
		if s.String() == from {
			continue // a resource writing to its own account has it already
		}
		s.Send(carbon(st, s.Bare().String(), s.String(), "received"))
	}
	return nil
}

func got(delivered []*router.Session, s *router.Session) bool {
	for _, d := range delivered {
		if d == s {
			return true
		}
	}
	return false
}

// sent copies a message a local session sends to the account's other
// sessions that enabled carbons. Messages to the account itself are left
// to received; those to the server are not copied.
func (m *Module) sent(_ context.Context, ev *router.Event) error {
	from, st := ev.Origin, ev.Stanza
	if m.on.Load() == 0 || from == nil || st.To.Equal(st.To.Domain()) && st.To.Domainpart() == m.r.Domain() || st.ToBare() == from.Bare().String() {
		return nil
	}
	checked := false
	bare := from.Bare().String()
	for _, s := range m.r.Sessions(from.Bare()) {
		if s == from || !enabled.Get(s).Load() {
			continue
		}
		if !checked {
			if !eligible(st) {
				return nil
			}
			checked = true
		}
		s.Send(carbon(st, bare, s.String(), "sent"))
	}
	return nil
}
