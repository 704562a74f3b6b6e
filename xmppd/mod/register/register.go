// Package register is what a logged-in user has of in-band registration
// (XEP-0077): changing the password.
package register

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"unicode/utf8"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// NS is the namespace of in-band registration (XEP-0077).
const NS = "jabber:iq:register"

// maxPasswordBytes bounds a new password: enough for any passphrase, and
// the key derivation reads all of it.
const maxPasswordBytes = 1024

// SetPassword stores password as the new password of n. session is the
// full JID that asked, which keeps its stream while the account's other
// sessions are closed.
type SetPassword func(ctx context.Context, n auth.Number, session jid.JID, password string) error

// Module serves the part of in-band registration (XEP-0077) that a
// logged-in user has here: changing the password (§3.3) and asking
// whether the account is registered (§3.1). Accounts are not made in-band
// (the core refuses that before authentication: the phone number is the
// account) nor removed (§3.2): that is the operator's.
type Module struct {
	r      router.Routing
	parser *auth.NumberParser
	set    SetPassword
}

// New returns the module; parser reads the username of a request,
// which may be written in any accepted form of the account's number, and
// set stores the new password.
func New(r router.Routing, parser *auth.NumberParser, set SetPassword) *Module {
	return &Module{r: r, parser: parser, set: set}
}

// Register adds the jabber:iq:register handler for the server and for the
// sender's own account, and advertises it on both.
func (m *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer|router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "query"}, m.handle)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NS)
	return nil
}

// registerQuery is the <query xmlns='jabber:iq:register'/> of a request.
type registerQuery struct {
	XMLName  xml.Name  `xml:"jabber:iq:register query"`
	Username *string   `xml:"username"`
	Password *string   `xml:"password"`
	Remove   *struct{} `xml:"remove"`
}

func (m *Module) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	// From a local account (not a peer's user), to the server or to the
	// sender's own account; nobody else's.
	if iq.From.Domainpart() != m.r.Domain() || iq.From.Localpart() == "" {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	if iq.To.Localpart() != "" && !iq.ToOwnAccount() {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	user := auth.Number(iq.From.Localpart())
	var q registerQuery
	if err := iq.DecodePayload(&q); err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	switch iq.Type {
	case "get":
		b := wire.NewBuilder(nil)
		b.StartNS("query", NS).Element("registered", "", "").Element("username", "", string(user))
		return b.End().Bytes(), nil
	case "set":
	default:
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if q.Remove != nil {
		return nil, router.NewError(stanza.Cancel, stanza.NotAllowed, "Accounts are not removed in-band here; ask the operator.")
	}
	if q.Username == nil || q.Password == nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "A password change needs a username and a password.")
	}
	if n, err := m.parser.Parse(*q.Username); err != nil || n != user {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "Only the password of your own account can be changed.")
	}
	password := *q.Password
	switch {
	case utf8.RuneCountInString(password) < auth.MinPasswordLength:
		return nil, router.NewError(stanza.Modify, stanza.NotAcceptable,
			fmt.Sprintf("The password must have at least %d characters.", auth.MinPasswordLength))
	case len(password) > maxPasswordBytes:
		return nil, router.NewError(stanza.Modify, stanza.NotAcceptable,
			fmt.Sprintf("The password must not be longer than %d bytes.", maxPasswordBytes))
	case !utf8.ValidString(password):
		return nil, router.NewError(stanza.Modify, stanza.NotAcceptable, "The password is not valid text.")
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if err := m.set(sctx, user, iq.From, password); err != nil {
		var se stanza.Error
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, fmt.Errorf("change password of %s: %w", user, err)
	}
	return nil, nil
}
