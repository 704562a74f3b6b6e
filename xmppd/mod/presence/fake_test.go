package presence

import (
	"context"
	rostermod "dialtone/xmppd/mod/roster"
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const domain = "example.net"

// Local accounts of the tests and one remote contact.
var (
	alice  = jid.MustParse("+821011111111@" + domain)
	bob    = jid.MustParse("+821022222222@" + domain)
	carol  = jid.MustParse("+821033333333@" + domain)
	juliet = jid.MustParse("juliet@capulet.example")
)

func full(bare jid.JID, res string) jid.JID {
	j, err := bare.WithResource(res)
	if err != nil {
		panic(err)
	}
	return j
}

// normalize accepts +<digits> and the Korean national forms 010-1234-5678
// and 01012345678 for the local domain.
func normalize(j jid.JID) (jid.JID, error) {
	if j.Domainpart() != domain {
		return j, nil
	}
	local := strings.ReplaceAll(strings.ReplaceAll(j.Localpart(), "-", ""), " ", "")
	digits := strings.TrimPrefix(local, "+")
	if len(digits) < 8 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	switch {
	case strings.HasPrefix(local, "+"):
	case strings.HasPrefix(local, "0"):
		local = "+82" + local[1:]
	default:
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	return jid.New(local, domain, j.Resourcepart())
}

// env is the presence module and the roster module wired to a fake
// router and store: presence routed to the local domain comes back to the
// presence module, as the router hands it over.
type env struct {
	t     *testing.T
	m     *Module
	rost  *rostermod.Module
	r     *modtest.Router
	store *modtest.Rosters
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r := modtest.NewRouter(domain, alice.String(), bob.String(), carol.String())
	r.Normalizer = normalize
	st := modtest.NewRosters()
	rost := rostermod.New(st, r, nil)
	m := New(r, rost, nil)
	r.OnRoute = func(ctx context.Context, s *router.Stanza) {
		// Like the router: presence to any address of the local domain
		// (latent numbers included) is inbound presence.
		if s.Kind == router.KindPresence && s.To.Domainpart() == domain && s.To.Localpart() != "" {
			m.InboundPresence(ctx, s)
		}
	}
	return &env{t: t, m: m, rost: rost, r: r, store: st}
}

// presence makes a presence stanza the way the core hands it over.
func presence(typ string, from, to jid.JID, inner string) *router.Stanza {
	return &router.Stanza{Kind: router.KindPresence, Type: typ, From: from, To: to, Inner: []byte(inner)}
}

// send hands an outbound presence of the session from to the module (a
// session the fake router does not know when from is not bound).
func (e *env) send(typ string, from, to jid.JID, inner string) {
	sess := e.r.Session(from)
	if sess == nil {
		sess = router.NewSession(context.Background(), from, nil)
	}
	e.m.OutboundPresence(context.Background(), sess, presence(typ, from, to, inner))
}

// login binds a session, requests the roster and sends initial presence.
func (e *env) login(f jid.JID) {
	e.t.Helper()
	e.r.Bind(f)
	if _, err := e.iq("get", f, jid.JID{}, `<query xmlns="jabber:iq:roster"/>`); err != nil {
		e.t.Fatalf("roster get for %s: %v", f, err)
	}
	e.send("", f, jid.JID{}, "<priority>1</priority>")
}

// iq calls the roster handler with an iq built as the core builds it: no
// 'to' becomes the sender's bare JID with ToAbsent.
func (e *env) iq(typ string, from, to jid.JID, inner string) ([]byte, error) {
	s := &router.Stanza{Kind: router.KindIQ, Type: typ, ID: "q1", From: from, To: to, Inner: []byte(inner),
		Payload: xml.Name{Space: rostermod.NS, Local: "query"}}
	if to.Equal(jid.JID{}) {
		s.To, s.ToAbsent = from.Bare(), true
	}
	return e.rost.Handle(context.Background(), s)
}

// state returns "sub[+out][+in][+approved][ hidden]" of a stored item,
// "absent" when there is none.
func (e *env) state(owner, contact jid.JID) string {
	it, ok := e.store.Get(owner, contact)
	if !ok {
		return "absent"
	}
	s := it.Subscription
	if it.PendingOut {
		s += "+out"
	}
	if it.PendingIn {
		s += "+in"
	}
	if it.Approved {
		s += "+approved"
	}
	if !it.InRoster {
		s += " hidden"
	}
	return s
}

func condition(err error) string {
	var se stanza.Error
	if errors.As(err, &se) {
		return string(se.Condition)
	}
	if err == nil {
		return ""
	}
	return "non-stanza error: " + err.Error()
}
