package stream

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"strings"

	"dialtone/xmppd/wire"
)

// NSDialback is the namespace of server dialback (XEP-0220), whose prefix
// s2s stream headers declare.
const NSDialback = "jabber:server:dialback"

// Header is a stream header as this server writes it.
type Header struct {
	// ContentNS is the stream's content namespace: jabber:client or
	// jabber:server.
	ContentNS string
	// Dialback declares the db: prefix (s2s).
	Dialback bool
	ID       string
	From, To string
	// Lang is the header's xml:lang; "" writes "en".
	Lang string
}

// Append appends the header as a TCP stream carries it: the XML
// declaration and the open stream element.
func (h Header) Append(buf []byte) []byte {
	b := wire.NewBuilder(buf)
	b.Declaration()
	b.Start("stream:stream", "xmlns", h.ContentNS, "xmlns:stream", NSStream)
	if h.Dialback {
		b.Attr("xmlns:db", NSDialback)
	}
	h.attrs(b)
	return b.Opened()
}

// Attrs writes the header's attributes on the element b just opened (the
// header itself, or RFC 7395's <open/>).
func (h Header) attrs(b *wire.Builder) {
	lang := h.Lang
	if lang == "" {
		lang = "en"
	}
	for _, a := range [][2]string{{"id", h.ID}, {"from", h.From}, {"to", h.To}, {"version", "1.0"}, {"xml:lang", lang}} {
		if a[1] != "" {
			b.Attr(a[0], a[1])
		}
	}
}

// AppendOpen appends the header as RFC 7395's <open/> element.
func (h Header) AppendOpen(buf []byte, nsFraming string) []byte {
	b := wire.NewBuilder(buf)
	b.StartNS("open", nsFraming)
	h.attrs(b)
	return b.End().Bytes()
}

// NewID returns a new stream id.
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PeerHeader is what a peer's stream header says.
type PeerHeader struct {
	From, To, ID, Lang string
	HasFrom, HasTo     bool
}

// CheckHeader checks what every stream header must be (RFC 6120 §4.7):
// the stream element in the streams namespace, the content namespace
// contentNS, a version this server speaks. It returns what the header
// says, for the checks of c2s and s2s.
func CheckHeader(r *wire.Reader, t xml.StartElement, contentNS string) (PeerHeader, error) {
	var h PeerHeader
	h.From, h.HasFrom = wire.Attr(t, "", "from")
	h.To, h.HasTo = wire.Attr(t, "", "to")
	h.ID, _ = wire.Attr(t, "", "id")
	if lang, ok := wire.Attr(t, "xml", "lang"); ok && ValidLang(lang) {
		h.Lang = lang
	}
	version, _ := wire.Attr(t, "", "version")
	switch {
	case t.Name.Local != "stream" || r.HeaderNS() != NSStream:
		return h, NewError("invalid-namespace", "expected a stream in "+NSStream)
	case r.DefaultNS() != contentNS:
		return h, NewError("invalid-namespace", "expected content namespace "+contentNS)
	case !SupportedVersion(version):
		return h, NewError("unsupported-version", "XMPP 1.0 streams only")
	}
	return h, nil
}

// SupportedVersion reports whether a stream header's version is one this
// server speaks: 1.0, or a higher one, which it answers with 1.0 (RFC 6120
// §4.7.5). The version is "major.minor", two non-negative integers; none
// at all means a pre-1.0 stream.
func SupportedVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	return ok && isDigits(major) && isDigits(minor) && strings.TrimLeft(major, "0") != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ValidLang reports whether s looks like a language tag (BCP 47's
// characters, not too long): only such a tag is echoed in our header.
func ValidLang(s string) bool {
	if len(s) == 0 || len(s) > 35 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
