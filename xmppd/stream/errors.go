package stream

import (
	"errors"

	"dialtone/xmppd/wire"
)

// Namespaces of the stream layer (RFC 6120).
const (
	NSStream  = "http://etherx.jabber.org/streams"
	NSTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSStreams = "urn:ietf:params:xml:ns:xmpp-streams"
)

// Error is a stream error condition (RFC 6120 §4.9.3) that ends a stream.
type Error struct {
	Condition string
	Text      string
}

func (e *Error) Error() string { return "stream error " + e.Condition + ": " + e.Text }

// NewError returns the stream error cond, with an optional text.
func NewError(cond, text string) error { return &Error{Condition: cond, Text: text} }

// Condition is the one mapping from why a stream ends to the stream error
// it ends with, for c2s, s2s and WebSocket streams alike; "" means a plain
// close (the peer ended the stream, the network went away).
func Condition(err error) (cond, text string) {
	var se *Error
	switch {
	case err == nil:
	case errors.As(err, &se):
		return se.Condition, se.Text
	case errors.Is(err, wire.ErrStanzaTooBig), errors.Is(err, wire.ErrTooDeep):
		return "policy-violation", err.Error()
	case errors.Is(err, wire.ErrRestrictedXML):
		return "restricted-xml", ""
	case errors.Is(err, wire.ErrUnsupportedVersion):
		return "unsupported-version", err.Error()
	case errors.Is(err, wire.ErrUnsupportedEncoding):
		return "unsupported-encoding", err.Error()
	case errors.Is(err, wire.ErrIdle):
		return "connection-timeout", "nothing came in time"
	case wire.IsNotWellFormed(err):
		return "not-well-formed", ""
	}
	return "", ""
}

// AppendError appends the <stream:error/> element of a condition.
func AppendError(buf []byte, cond, text string) []byte {
	b := wire.NewBuilder(buf)
	b.Start("stream:error").Element(cond, NSStreams, "")
	if text != "" {
		b.Element("text", NSStreams, text)
	}
	return b.End().Bytes()
}
