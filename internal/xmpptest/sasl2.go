package xmpptest

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"strings"
)

// Features is what a client reads from <stream:features/> for the modern
// login.
type Features struct {
	Mechanisms   []string `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
	BindingTypes []struct {
		Type string `xml:"type,attr"`
	} `xml:"urn:xmpp:sasl-cb:0 sasl-channel-binding>channel-binding"`
	SASL2 *struct {
		Mechanisms []string `xml:"mechanism"`
		Inline     struct {
			Bind *struct {
				Features []struct {
					Var string `xml:"var,attr"`
				} `xml:"inline>feature"`
			} `xml:"urn:xmpp:bind:0 bind"`
			FAST *struct {
				Mechanisms []string `xml:"mechanism"`
			} `xml:"urn:xmpp:fast:0 fast"`
			// SM is XEP-0198's inline <resume/> offer.
			SM *struct{} `xml:"urn:xmpp:sm:3 sm"`
		} `xml:"inline"`
	} `xml:"urn:xmpp:sasl:2 authentication"`
}

// Types returns the XEP-0440 channel binding types; nil when the element
// is absent.
func (f Features) Types() []string {
	var t []string
	for _, b := range f.BindingTypes {
		t = append(t, b.Type)
	}
	return t
}

// ParseFeatures reads a features element.
func ParseFeatures(e Elem) Features {
	var f Features
	xml.Unmarshal([]byte("<f xmlns:stream='http://etherx.jabber.org/streams'>"+e.Inner+"</f>"), &f)
	return f
}

// SecureFeatures opens a stream on a new connection to the STARTTLS port
// addr, runs STARTTLS and returns the features offered then.
func (c *Client) SecureFeatures() Features {
	c.T.Helper()
	c.Open(c.Domain)
	c.StartTLS()
	return ParseFeatures(c.Expect("features", func(e Elem) bool { return e.XMLName.Local == "features" }))
}

// TLSState is the client's TLS connection state.
func (c *Client) TLSState() tls.ConnectionState {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		c.T.Fatal("not a TLS connection")
	}
	return tc.ConnectionState()
}

// Exporter is the tls-exporter channel binding data (RFC 9266) of the
// connection, computed as a client does.
func (c *Client) Exporter() []byte {
	cs := c.TLSState()
	b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		c.T.Fatal(err)
	}
	return b
}

// EndPoint is the tls-server-end-point data (RFC 5929) of the server's
// certificate, whose signature uses SHA-256 in these tests.
func (c *Client) EndPoint() []byte {
	sum := sha256.Sum256(c.TLSState().PeerCertificates[0].Raw)
	return sum[:]
}

// SASL2Request is a XEP-0388 <authenticate/>.
type SASL2Request struct {
	Mechanism string
	Initial   []byte // nil: no initial response
	// Step answers a challenge; nil when the mechanism has none.
	Step      func(challenge []byte) ([]byte, error)
	UserAgent string // id of <user-agent/>; empty: none
	// Bind asks for Bind2 with Tag and BindInline (raw XML) in <bind/>.
	Bind       bool
	Tag        string
	BindInline string
	Inline     string // raw XML in <authenticate/>
}

// SASL2Result is the outcome of a SASL2 authentication.
type SASL2Result struct {
	Failure    string // the condition; empty on success
	Success    Elem
	Additional []byte
	// Identifier is <authorization-identifier/>.
	Identifier string
}

// Authenticate2 runs a SASL2 exchange.
func (c *Client) Authenticate2(r SASL2Request) SASL2Result {
	c.T.Helper()
	var b strings.Builder
	b.WriteString(`<authenticate xmlns='urn:xmpp:sasl:2' mechanism='` + r.Mechanism + `'>`)
	if r.Initial != nil {
		b.WriteString(`<initial-response>` + b64(r.Initial) + `</initial-response>`)
	}
	if r.UserAgent != "" {
		b.WriteString(`<user-agent id='` + r.UserAgent + `'><software>xmpptest</software></user-agent>`)
	}
	if r.Bind {
		b.WriteString(`<bind xmlns='urn:xmpp:bind:0'><tag>` + r.Tag + `</tag>` + r.BindInline + `</bind>`)
	}
	b.WriteString(r.Inline + `</authenticate>`)
	c.Send(b.String())
	for i := 0; i < 5; i++ {
		e := c.Next()
		if e.XMLName.Space != "urn:xmpp:sasl:2" {
			c.T.Fatalf("unexpected %v during SASL2", e)
		}
		switch e.XMLName.Local {
		case "challenge":
			data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Inner))
			resp, err := r.Step(data)
			if err != nil {
				c.T.Fatalf("SASL2 step: %v", err)
			}
			c.Send(`<response xmlns='urn:xmpp:sasl:2'>` + b64(resp) + `</response>`)
		case "success":
			var s struct {
				Data  string `xml:"additional-data"`
				Ident string `xml:"authorization-identifier"`
			}
			xml.Unmarshal([]byte("<s xmlns='urn:xmpp:sasl:2'>"+e.Inner+"</s>"), &s)
			data, _ := base64.StdEncoding.DecodeString(s.Data)
			if strings.Contains(s.Ident, "/") {
				c.JID = s.Ident
			}
			return SASL2Result{Success: e, Additional: data, Identifier: s.Ident}
		case "failure":
			var f struct {
				Any []struct{ XMLName xml.Name } `xml:",any"`
			}
			xml.Unmarshal([]byte("<f>"+e.Inner+"</f>"), &f)
			for _, a := range f.Any {
				if a.XMLName.Local != "text" {
					return SASL2Result{Failure: a.XMLName.Local}
				}
			}
			return SASL2Result{Failure: "?"}
		}
	}
	c.T.Fatal("SASL2 did not end")
	return SASL2Result{}
}
