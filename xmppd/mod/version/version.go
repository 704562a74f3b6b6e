// Package version answers software version requests (XEP-0092).
package version

import (
	"context"
	"encoding/xml"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/version"
)

// SoftwareName is the name the server gives in software version answers.
const SoftwareName = "Dialtone"

// Module answers software version requests (XEP-0092) to the server with
// the name "Dialtone" and the version it was built as; the operating system
// is not disclosed.
type Module struct {
	result []byte
}

// New returns the version module answering with the given version.
func New(v string) *Module {
	b := wire.NewBuilder(nil).StartNS("query", version.NS).
		Element("name", "", SoftwareName).Element("version", "", v).End().Bytes()
	return &Module{result: b}
}

// Register adds the jabber:iq:version handler for the server and
// advertises it.
func (v *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, xml.Name{Space: version.NS, Local: "query"}, v.handle)
	h.AddFeature(router.ScopeServer, version.NS)
	return nil
}

func (v *Module) handle(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	return v.result[:len(v.result):len(v.result)], nil
}
