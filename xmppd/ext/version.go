package ext

import (
	"context"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

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
	b = wire.AppendEscaped(b, SoftwareName)
	b = append(b, "</name><version>"...)
	b = wire.AppendEscaped(b, v)
	b = append(b, "</version></query>"...)
	return &Version{result: b}
}

// Register adds the jabber:iq:version handler for the server and
// advertises it.
func (v *Version) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, name(version.NS, "query"), v.handle)
	h.AddFeature(router.ScopeServer, version.NS)
	return nil
}

func (v *Version) handle(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != iqGet {
		return nil, errBadRequest
	}
	return v.result[:len(v.result):len(v.result)], nil
}
