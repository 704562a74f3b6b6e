package auth

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"hash"
	"slices"
	"strings"
	"sync/atomic"
)

// Channel binding types (RFC 5056) the server can bind SCRAM-*-PLUS to.
const (
	// BindingTLSExporter is RFC 9266's, only on TLS 1.3, where the
	// exporter is bound to the whole handshake.
	BindingTLSExporter = "tls-exporter"
	// BindingTLSServerEndPoint is RFC 5929's hash of the server's
	// certificate, on any TLS version.
	BindingTLSServerEndPoint = "tls-server-end-point"
)

// exporterLabel and exporterLength are RFC 9266 §2's.
const (
	exporterLabel  = "EXPORTER-Channel-Binding"
	exporterLength = 32
)

// Conn is what an exchange needs to know of the connection it runs on.
type Conn struct {
	// TLS: the client's connection is encrypted (here or at a trusted
	// proxy); PLAIN is offered only then.
	TLS bool
	// Binding is the channel binding data of a TLS connection this
	// server terminated; zero where TLS ends elsewhere (a proxy), since
	// a client would bind to the proxy's TLS, which the server cannot see.
	Binding ChannelBinding
	// SASL2: the exchange runs in XEP-0388. Its clients know XEP-0440, so
	// a "y" (can bind, saw no -PLUS) where -PLUS is offered is a
	// downgrade. On RFC 6120 SASL it is not refused: older clients that
	// bind only with tls-unique, which TLS 1.3 lacks (slixmpp), say "y"
	// honestly; XEP-0474's d= protects those that check it.
	SASL2 bool
}

// ChannelBinding is the channel binding data of one TLS connection.
type ChannelBinding struct {
	Exporter []byte // tls-exporter data; nil below TLS 1.3
	EndPoint []byte // tls-server-end-point data; nil when the certificate is unknown
}

// BindingOf computes the channel binding data of a server-side TLS
// connection whose handshake is complete; leaf is the DER certificate the
// server presented (nil: unknown, no tls-server-end-point).
func BindingOf(cs tls.ConnectionState, leaf []byte) ChannelBinding {
	var cb ChannelBinding
	if !cs.HandshakeComplete {
		return cb
	}
	if cs.Version >= tls.VersionTLS13 {
		if ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLength); err == nil {
			cb.Exporter = ekm
		}
	}
	if leaf != nil {
		cb.EndPoint = EndPointHash(leaf)
	}
	return cb
}

// EndPointHash is RFC 5929 §4.1's tls-server-end-point data of a DER
// certificate: its hash with the hash of its signature algorithm, SHA-256
// for MD5 and SHA-1 (and for algorithms without one, such as Ed25519,
// as clients do). nil for a certificate that does not parse.
func EndPointHash(der []byte) []byte {
	// Every TLS login asks for the hash of the same certificate: parsing
	// it each time was about 4 KB of garbage per login (a login's garbage
	// is what scatters idle sessions' objects over the heap) and CPU.
	if e := lastEndPoint.Load(); e != nil && bytes.Equal(e.der, der) {
		return bytes.Clone(e.sum)
	}
	sum := endPointHash(der)
	if sum != nil {
		lastEndPoint.Store(&endPoint{der: bytes.Clone(der), sum: bytes.Clone(sum)})
	}
	return sum
}

// endPoint is a certificate and its EndPointHash.
type endPoint struct{ der, sum []byte }

// lastEndPoint is the last certificate hashed: a server presents one (or
// a few, by name) for a long time.
var lastEndPoint atomic.Pointer[endPoint]

func endPointHash(der []byte) []byte {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	var h crypto.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = crypto.SHA512
	default:
		h = crypto.SHA256
	}
	if !h.Available() {
		h = crypto.SHA256
	}
	d := h.New()
	d.Write(der)
	return d.Sum(nil)
}

// Can reports whether there is any channel binding to offer.
func (cb ChannelBinding) Can() bool { return len(cb.Types()) > 0 }

// Types returns the binding types available, best first: what XEP-0440's
// <sasl-channel-binding/> lists.
func (cb ChannelBinding) Types() []string {
	var t []string
	if cb.Exporter != nil {
		t = append(t, BindingTLSExporter)
	}
	if cb.EndPoint != nil {
		t = append(t, BindingTLSServerEndPoint)
	}
	return t
}

// Data returns the binding data of type typ, false when it is not
// available on the connection.
func (cb ChannelBinding) Data(typ string) ([]byte, bool) {
	switch {
	case typ == BindingTLSExporter && cb.Exporter != nil:
		return cb.Exporter, true
	case typ == BindingTLSServerEndPoint && cb.EndPoint != nil:
		return cb.EndPoint, true
	}
	return nil, false
}

// DowngradeHash is XEP-0474's: the hash h of the advertised mechanisms,
// sorted and joined by ",", followed, when channel binding types were
// advertised (XEP-0440), by "|" and the types, sorted and joined by ",".
// The server sends it as attribute d of the SCRAM server-first-message;
// a client that computes another value from what it saw was shown a
// tampered list.
func DowngradeHash(h func() hash.Hash, mechanisms, bindingTypes []string) []byte {
	if h == nil {
		h = sha256.New
	}
	m := slices.Sorted(slices.Values(mechanisms))
	s := strings.Join(m, ",")
	if len(bindingTypes) > 0 {
		s += "|" + strings.Join(slices.Sorted(slices.Values(bindingTypes)), ",")
	}
	d := h()
	d.Write([]byte(s))
	return d.Sum(nil)
}
