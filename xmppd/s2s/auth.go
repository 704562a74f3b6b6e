package s2s

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mellium.im/xmpp/jid"
)

// checkTLSUsed refuses, on an incoming stream, anything but STARTTLS (or
// the peer's stream error) before TLS while TLS is required: a peer that
// does not use the STARTTLS offered gets nothing done, no stanza, no
// dialback request and no dialback verification (XMPPD_S2S_REQUIRE_TLS).
func (s *link) checkTLSUsed(ns, name string) error {
	if s.outgoing || s.secure || s.f.cfg.AllowPlaintext {
		return nil
	}
	if ns == stream.NSTLS && name == "starttls" || ns == stream.NSStream && name == "error" {
		return nil
	}
	s.f.m.rejected.WithLabelValues("policy-violation").Inc()
	return stream.NewError("policy-violation", "STARTTLS is required")
}

// dialbackKey is the XEP-0185 key for a stream: HMAC-SHA256 keyed with
// SHA-256(secret) over "Receiving Originating StreamID", in hex.
func (f *Federation) dialbackKey(receiving, originating, id string) string {
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(f.secretHash[:])))
	mac.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(mac.Sum(nil))
}

func (f *Federation) checkDialbackKey(key, receiving, originating, id string) bool {
	want := f.dialbackKey(receiving, originating, id)
	return hmac.Equal([]byte(strings.ToLower(key)), []byte(want))
}

// LoadDialbackSecret returns secret, or when it is empty the secret kept
// in dataDir/dialback.key, made on first use.
func LoadDialbackSecret(secret, dataDir string) ([]byte, error) {
	if secret != "" {
		return []byte(secret), nil
	}
	path := filepath.Join(dataDir, "dialback.key")
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("%s: too short; remove it to make a new secret", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dialback secret: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	s := hex.EncodeToString(raw)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("dialback secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("dialback secret: %w", err)
	}
	return []byte(s), nil
}

// certValid reports whether the chain certs (leaf first) verifies against
// the configured roots and the leaf names domain as an XMPP server.
func (f *Federation) certValid(certs []*x509.Certificate, domain string) bool {
	if len(certs) == 0 || domain == "" {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         f.cfg.RootCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil && certNamesDomain(certs[0], domain)
}

// Object identifiers of the XMPP identities in subjectAltName (RFC 6120
// §13.7.1.4, RFC 4985).
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXmppAddr       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
	oidSRVName        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
)

// certNamesDomain checks the identities of RFC 6125 / RFC 7590 for a
// server: an XmppAddr equal to the domain, an SRVName _xmpp-server.domain
// (or _xmpps-server.domain), or a DNS name (one leading wildcard label).
// The subject's common name is not used.
func certNamesDomain(c *x509.Certificate, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, n := range c.DNSNames {
		if dnsNameMatches(strings.ToLower(n), domain) {
			return true
		}
	}
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		for _, on := range otherNames(ext.Value) {
			switch {
			case on.oid.Equal(oidXmppAddr) && strings.EqualFold(on.value, domain):
				return true
			case on.oid.Equal(oidSRVName):
				v := strings.ToLower(on.value)
				if v == "_xmpp-server."+domain || v == "_xmpps-server."+domain {
					return true
				}
			}
		}
	}
	return false
}

func dnsNameMatches(pattern, domain string) bool {
	if pattern == domain {
		return true
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		i := strings.IndexByte(domain, '.')
		return i > 0 && domain[i+1:] == rest
	}
	return false
}

type otherName struct {
	oid   asn1.ObjectIdentifier
	value string
}

// otherNames returns the otherName entries of a subjectAltName extension
// whose value is a string (UTF8String, IA5String).
func otherNames(der []byte) []otherName {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) > 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence {
		return nil
	}
	var out []otherName
	rest := seq.Bytes
	for len(rest) > 0 {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return out
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
			continue
		}
		// otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }, IMPLICIT-tagged [0]
		var oid asn1.ObjectIdentifier
		inner, err := asn1.Unmarshal(gn.Bytes, &oid)
		if err != nil {
			continue
		}
		var explicit asn1.RawValue
		if _, err := asn1.Unmarshal(inner, &explicit); err != nil || explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 {
			continue
		}
		var v asn1.RawValue
		if _, err := asn1.Unmarshal(explicit.Bytes, &v); err != nil {
			continue
		}
		if v.Class == asn1.ClassUniversal && (v.Tag == asn1.TagUTF8String || v.Tag == asn1.TagIA5String) {
			out = append(out, otherName{oid, string(v.Bytes)})
		}
	}
	return out
}

// dialback is a <db:result/> or <db:verify/> as a peer sent it (XEP-0220).
type dialback struct {
	from, to, id, typ string
	key               string // the text, trimmed
}

// parseDialback reads the attributes and key of a dialback element.
func parseDialback(el wire.Element) dialback {
	var d dialback
	d.from, _ = wire.Attr(el.Start, "", "from")
	d.to, _ = wire.Attr(el.Start, "", "to")
	d.id, _ = wire.Attr(el.Start, "", "id")
	d.typ, _ = wire.Attr(el.Start, "", "type")
	d.key = string(bytes.TrimSpace(el.Inner))
	return d
}

// requestDomain checks a dialback request (<db:result/> to us, XEP-0220
// §2.1.1): 'from' a domain, nothing more, and a key that is text. It
// returns the domain.
func (d dialback) requestDomain() (string, bool) {
	fj, err := jid.Parse(d.from)
	if err != nil || fj.Localpart() != "" || fj.Resourcepart() != "" || d.key == "" || strings.Contains(d.key, "<") {
		return "", false
	}
	return fj.Domainpart(), true
}
