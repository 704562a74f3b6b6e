package xmppd

import "dialtone/xmppd/wire"

// AppendEscaped appends s escaped for XML text or a double-quoted attribute.
func AppendEscaped(b []byte, s string) []byte { return wire.AppendEscaped(b, s) }

func appendAttr(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	b = wire.AppendEscaped(b, value)
	return append(b, '"')
}

// DefaultMaxStanzaSize is the largest stanza accepted by default.
const DefaultMaxStanzaSize = wire.DefaultMaxStanzaSize
