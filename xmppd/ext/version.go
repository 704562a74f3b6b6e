package ext

import (
	"context"

	"dialtone/xmppd"

	"mellium.im/xmpp/version"
)

// SoftwareName is the name the server gives in software version answers.
const SoftwareName = "Dialtone"

// Version answers software version requests (XEP-0092) to the server with
// the name "Dialtone" and the version it was built as; the operating system
// is not disclosed.
type Version struct {
	result []byte
}

// NewVersion returns the version module answering with the given version.
func NewVersion(v string) *Version {
	b := []byte(`<query xmlns="` + version.NS + `"><name>`)
	b = xmppd.AppendEscaped(b, SoftwareName)
	b = append(b, "</name><version>"...)
	b = xmppd.AppendEscaped(b, v)
	b = append(b, "</version></query>"...)
	return &Version{result: b}
}

// Register adds the jabber:iq:version handler for the server.
func (v *Version) Register(mux *xmppd.Mux) {
	mux.HandleIQ(xmppd.ScopeServer, name(version.NS, "query"), v.handle)
}

func (v *Version) handle(_ context.Context, iq *xmppd.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	return v.result[:len(v.result):len(v.result)], nil
}
