// Package ext holds the small feature modules of the server, one XEP per
// file, the way Prosody's mod_disco, mod_ping, mod_version, mod_vcard,
// mod_private and mod_blocklist do: service discovery and entity
// capabilities (XEP-0030, XEP-0115), ping (XEP-0199), software version
// (XEP-0092), vcard-temp (XEP-0054), private XML storage (XEP-0049) and
// blocking (XEP-0191).
//
// Each module is a router.Module; load them all before the server starts.
// Disco reads the features the others registered when it answers its first
// request (or CapsElement is called), so the order of loading does not
// matter.
package ext

import (
	"encoding/xml"
	"errors"

	"dialtone/auth"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/stanza"
)

// Default limits of the storing modules.
const (
	// DefaultMaxVCard is the largest vCard (re-serialised) VCard stores.
	DefaultMaxVCard = 64 << 10
	// DefaultMaxPrivate is the largest element Private stores per key.
	DefaultMaxPrivate = 64 << 10
)

// IQ types.
const (
	iqGet = "get"
	iqSet = "set"
)

// stanzaErr builds a stanza error with an optional English text.
func stanzaErr(typ stanza.ErrorType, cond stanza.Condition, text string) stanza.Error {
	e := stanza.Error{Type: typ, Condition: cond}
	if text != "" {
		e.Text = map[string]string{"": text}
	}
	return e
}

var (
	errBadRequest     = stanzaErr(stanza.Modify, stanza.BadRequest, "")
	errForbidden      = stanzaErr(stanza.Auth, stanza.Forbidden, "")
	errItemNotFound   = stanzaErr(stanza.Cancel, stanza.ItemNotFound, "")
	errServiceUnavail = stanzaErr(stanza.Cancel, stanza.ServiceUnavailable, "")
)

// isOwn reports whether iq is addressed to the sender's own account.
func isOwn(iq *router.Stanza) bool {
	return iq.To.Equal(iq.From.Bare())
}

// notFound reports whether err is a store's not-found.
func notFound(err error) bool { return errors.Is(err, auth.ErrNotFound) }

// payloadError maps an error from reading client XML to a stanza error:
// size and depth limits become policy-violation, anything else bad-request.
func payloadError(err error, what string) error {
	switch {
	case errors.Is(err, errTooLarge):
		return stanzaErr(stanza.Modify, stanza.PolicyViolation, what+" is too large")
	case errors.Is(err, errTooDeep):
		return stanzaErr(stanza.Modify, stanza.PolicyViolation, what+" is nested too deeply")
	}
	return errBadRequest
}

// name is a shorthand for xml.Name.
func name(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }
