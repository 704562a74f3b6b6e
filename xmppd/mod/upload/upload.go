// Package upload is the XMPP side of HTTP File Upload (XEP-0363): the
// service host upload.DOMAIN, listed as a disco item of the domain, with
// its disco#info (identity store/file, the max-file-size form) and the
// slot request, which package upload (the HTTP side) answers.
package upload

import (
	"context"
	"encoding/xml"
	"errors"
	"strconv"

	"dialtone/upload"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/stanza"
)

// NS is XEP-0363's namespace.
const NS = upload.Namespace

// nsData is XEP-0004's namespace (the disco#info extension form).
const nsData = "jabber:x:data"

// Slots hands out upload slots: *upload.Service.
type Slots interface {
	RequestSlot(ctx context.Context, owner, filename string, size int64, contentType string) (upload.Slot, error)
}

// Module serves upload.DOMAIN.
type Module struct {
	r     router.Routing
	slots Slots
	// MaxFileSize is advertised in the disco#info form (0: no field).
	maxFileSize int64
	host        string
}

// New returns the upload module of r's domain; maxFileSize is what
// the disco#info form advertises (XMPPD_UPLOAD_MAX_FILE_SIZE).
func New(r router.Routing, slots Slots, maxFileSize int64) *Module {
	return &Module{r: r, slots: slots, maxFileSize: maxFileSize, host: "upload." + r.Domain()}
}

// Host is the service's address, upload.DOMAIN.
func (m *Module) Host() string { return m.host }

// Register serves the host and lists it on the domain.
func (m *Module) Register(h *router.Hooks) error {
	sc := h.AddHost(m.host)
	h.AddItem(router.ScopeServer, router.DiscoItem{JID: m.host, Name: "HTTP File Upload"})
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: NS, Local: "request"}, m.request)
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: disco.NSInfo, Local: "query"}, m.info)
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: disco.NSItems, Local: "query"}, m.items)
	return nil
}

// info is the host's disco#info (XEP-0363 §3): the store/file identity,
// the feature and the max-file-size form (XEP-0128).
func (m *Module) info(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if err := noNode(iq); err != nil {
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("query", disco.NSInfo)
	b.Start("identity", "category", "store", "type", "file", "name", "HTTP File Upload").End()
	for _, f := range []string{disco.NSInfo, disco.NSItems, NS} {
		b.Start("feature", "var", f).End()
	}
	if m.maxFileSize > 0 {
		b.StartNS("x", nsData, "type", "result")
		b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", NS).End()
		b.Start("field", "var", "max-file-size").Element("value", "", strconv.FormatInt(m.maxFileSize, 10)).End()
		b.End()
	}
	return b.End().Bytes(), nil
}

func (m *Module) items(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if err := noNode(iq); err != nil {
		return nil, err
	}
	return payload.Empty(xml.Name{Space: disco.NSItems, Local: "query"}), nil
}

// noNode refuses a disco request for a node: the host has none.
func noNode(iq *router.Stanza) error {
	_, start, err := payload.Open(iq)
	if err != nil {
		return router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if node, _ := payload.Attr(start, "node"); node != "" {
		return router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	return nil
}

// request answers a slot request (XEP-0363 §4) of a local account.
func (m *Module) request(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.From.Domainpart() != m.r.Domain() || iq.From.Localpart() == "" {
		// Only the server's own accounts upload (their quota counts).
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "only accounts of this server may upload")
	}
	_, start, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	name, _ := payload.Attr(start, "filename")
	sizeAttr, _ := payload.Attr(start, "size")
	ctype, _ := payload.Attr(start, "content-type")
	size, err := strconv.ParseInt(sizeAttr, 10, 64)
	if name == "" || err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "a slot request needs a filename and a size in bytes")
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	slot, err := m.slots.RequestSlot(sctx, iq.From.Localpart(), name, size, ctype)
	if se := (*upload.SlotError)(nil); errors.As(err, &se) {
		return nil, slotError(se)
	}
	if err != nil {
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("slot", NS)
	b.Start("put", "url", slot.PutURL)
	for k, v := range slot.PutHeaders {
		b.Start("header", "name", k).Text(v).End()
	}
	b.End()
	b.Start("get", "url", slot.GetURL).End()
	return b.End().Bytes(), nil
}

// slotError is the stanza error of a refused request, with XEP-0363's
// <file-too-large/> when a size limit (the file's or the quota's) refused
// it: not-acceptable is only ever that. A quota used up has no
// max-file-size left to tell.
func slotError(se *upload.SlotError) error {
	e := router.NewError(stanza.ErrorType(se.Type), stanza.Condition(se.Condition), se.Text)
	if se.Condition != string(stanza.NotAcceptable) {
		return e
	}
	b := wire.NewBuilder(nil).StartNS("file-too-large", NS)
	if se.MaxFileSize > 0 {
		b.Element("max-file-size", "", strconv.FormatInt(se.MaxFileSize, 10))
	}
	return router.AppError{Err: e, App: b.End().Bytes()}
}
