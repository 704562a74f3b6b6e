package xmppd

import (
	"errors"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// streamError is a stream-level error condition (RFC 6120 §4.9.3).
type streamError struct {
	cond string
	text string
}

func (e *streamError) Error() string { return "stream error " + e.cond + ": " + e.text }

func serr(cond, text string) error { return &streamError{cond, text} }

// conditionOf is the one mapping from why a stream ends to the stream
// error it ends with (RFC 6120 §4.9.3), for c2s, s2s and WebSocket alike;
// "" means a plain close (the peer ended the stream, the network went
// away).
func conditionOf(err error) (cond, text string) {
	var se *streamError
	switch {
	case err == nil:
	case errors.As(err, &se):
		return se.cond, se.text
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
	case errors.Is(err, router.ErrUnsupportedStanza):
		return "unsupported-stanza-type", ""
	}
	return "", ""
}

// appendStreamError appends a stream error and the end of the stream.
func appendStreamError(b []byte, cond, text string) []byte {
	b = append(b, "<stream:error><"...)
	b = append(b, cond...)
	b = append(b, ` xmlns="`+nsStreams+`"/>`...)
	if text != "" {
		b = append(b, `<text xmlns="`+nsStreams+`">`...)
		b = AppendEscaped(b, text)
		b = append(b, "</text>"...)
	}
	return append(b, "</stream:error></stream:stream>"...)
}
