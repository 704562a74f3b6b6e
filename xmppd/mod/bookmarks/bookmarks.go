// Package bookmarks keeps an account's group chat bookmarks in step across
// the three places clients keep them (XEP-0402 "Compatibility"): the
// items of the PEP node urn:xmpp:bookmarks:1 (one per room), the XEP-0048
// <storage xmlns='storage:bookmarks'/> on the private PEP node
// storage:bookmarks (XEP-0223; the #compat-pep feature), and the same
// element in private XML storage (XEP-0049; the #compat feature). A
// change made through any of them is carried to the other two; a
// replacement list from the older protocols updates, publishes or
// retracts only the rooms that changed.
package bookmarks

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"dialtone/auth"
	"dialtone/pubsub"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
)

// Namespaces and node names.
const (
	NS        = "urn:xmpp:bookmarks:1"      // XEP-0402: node and payload
	NSLegacy  = "storage:bookmarks"         // XEP-0048: node and payload
	compat    = NS + "#compat"              // private XML kept in step
	compatPEP = NS + "#compat-pep"          // private PEP kept in step
	legacyKey = "{" + NSLegacy + "}storage" // private.Key of <storage/>
	legacyID  = "current"                   // XEP-0048's item id on PEP
	maxLegacy = 64 << 10                    // a kept <url/> at most
	itemLimit = 1 << 10                     // rooms read for a rebuild
)

// PEP is what the module uses of mod/pep's Module.
type PEP interface {
	Publish(ctx context.Context, owner jid.JID, node string, fields map[string]string, it pubsub.Item) error
	Retract(ctx context.Context, owner jid.JID, node, id string) error
}

// Store reads PEP items and reads and writes private XML: storage.DB.
type Store interface {
	PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]pubsub.Item, error)
	Private(ctx context.Context, owner, key string) ([]byte, error)
	PutPrivate(ctx context.Context, owner, key string, data []byte) error
}

// Module is the bookmarks compatibility. Wire it as an observer of the
// PEP module (pep.Module.Observe) and of private storage
// (private.Module.Observe with PrivateSet).
type Module struct {
	r     router.Routing
	pep   PEP
	store Store
	log   *slog.Logger
}

// New returns the module.
func New(r router.Routing, pep PEP, store Store, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{r: r, pep: pep, store: store, log: log}
}

// Register advertises the compatibility on accounts.
func (m *Module) Register(h *router.Hooks) error {
	h.AddFeature(router.ScopeAccount, compat)
	h.AddFeature(router.ScopeAccount, compatPEP)
	return nil
}

// The node configurations XEP-0402 and XEP-0223 ask for.
var (
	optionsNew    = map[string]string{pubsub.FieldAccessModel: pubsub.AccessWhitelist, pubsub.FieldMaxItems: "max", pubsub.FieldSendLast: pubsub.SendNever}
	optionsLegacy = map[string]string{pubsub.FieldAccessModel: pubsub.AccessWhitelist, pubsub.FieldSendLast: pubsub.SendNever}
)

// conference is one bookmark, whichever protocol carried it.
type conference struct {
	JID        string
	Name       string
	Autojoin   bool
	Nick       string
	Password   string
	Extensions []byte // XEP-0402 <extensions/> inner XML, kept as it is
}

func (c conference) same(o conference) bool {
	return c.JID == o.JID && c.Name == o.Name && c.Autojoin == o.Autojoin && c.Nick == o.Nick && c.Password == o.Password
}

// xmlConference reads both forms: XEP-0402's (jid in the item id) and
// XEP-0048's (jid attribute).
type xmlConference struct {
	JID        string `xml:"jid,attr"`
	Name       string `xml:"name,attr"`
	Autojoin   string `xml:"autojoin,attr"`
	Nick       string `xml:"nick"`
	Password   string `xml:"password"`
	Extensions struct {
		Inner []byte `xml:",innerxml"`
	} `xml:"extensions"`
}

func (x xmlConference) conference(jid string) conference {
	return conference{JID: jid, Name: x.Name, Autojoin: x.Autojoin == "true" || x.Autojoin == "1",
		Nick: x.Nick, Password: x.Password, Extensions: bytes.TrimSpace(x.Extensions.Inner)}
}

// parseNew reads a XEP-0402 item.
func parseNew(it pubsub.Item) (conference, bool) {
	var x struct {
		XMLName xml.Name `xml:"urn:xmpp:bookmarks:1 conference"`
		xmlConference
	}
	if it.ID == "" || xml.Unmarshal(it.Payload, &x) != nil {
		return conference{}, false
	}
	return x.conference(it.ID), true
}

// parseLegacy reads a XEP-0048 <storage/>: its conferences (the first
// of each jid) and the other children (<url/>), which XEP-0402 has no
// place for and are kept as they are.
func parseLegacy(b []byte) (confs []conference, rest [][]byte, err error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	start, ok, err := payload.NextChild(d)
	if err != nil || !ok || start.Name != (xml.Name{Space: NSLegacy, Local: "storage"}) {
		return nil, nil, fmt.Errorf("bookmarks: not a storage:bookmarks element: %w", errors.Join(err, errNotStorage))
	}
	seen := map[string]bool{}
	for {
		child, ok, err := payload.NextChild(d)
		if err != nil {
			return nil, nil, fmt.Errorf("bookmarks: %w", err)
		}
		if !ok {
			return confs, rest, nil
		}
		if child.Name == (xml.Name{Space: NSLegacy, Local: "conference"}) {
			var x xmlConference
			if err := d.DecodeElement(&x, &child); err != nil {
				return nil, nil, fmt.Errorf("bookmarks: %w", err)
			}
			j, err := jid.Parse(x.JID)
			if err != nil || seen[j.Bare().String()] {
				continue
			}
			seen[j.Bare().String()] = true
			confs = append(confs, x.conference(j.Bare().String()))
			continue
		}
		raw, err := payload.Copy(d, child, maxLegacy)
		if err != nil {
			return nil, nil, fmt.Errorf("bookmarks: %w", err)
		}
		rest = append(rest, raw)
	}
}

var errNotStorage = errors.New("not storage")

// newPayload writes a XEP-0402 <conference/>.
func newPayload(c conference) []byte {
	b := wire.NewBuilder(nil)
	attrs := []string{"autojoin", boolAttr(c.Autojoin)}
	if c.Name != "" {
		attrs = append(attrs, "name", c.Name)
	}
	b.StartNS("conference", NS, attrs...)
	writeNickPassword(b, c)
	if len(c.Extensions) > 0 {
		b.Start("extensions").Raw(c.Extensions).End()
	}
	return b.End().Bytes()
}

// legacyPayload writes a XEP-0048 <storage/> of confs and the kept rest.
func legacyPayload(confs []conference, rest [][]byte) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("storage", NSLegacy)
	for _, c := range confs {
		attrs := []string{"jid", c.JID, "autojoin", boolAttr(c.Autojoin)}
		if c.Name != "" {
			attrs = append(attrs, "name", c.Name)
		}
		b.Start("conference", attrs...)
		writeNickPassword(b, c)
		b.End()
	}
	for _, r := range rest {
		b.Raw(r)
	}
	return b.End().Bytes()
}

func writeNickPassword(b *wire.Builder, c conference) {
	if c.Nick != "" {
		b.Element("nick", "", c.Nick)
	}
	if c.Password != "" {
		b.Element("password", "", c.Password)
	}
}

func boolAttr(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// Published carries a change of either PEP form to the others.
func (m *Module) Published(ctx context.Context, owner jid.JID, node string, it pubsub.Item) {
	switch node {
	case NS:
		m.fromNew(ctx, owner)
	case NSLegacy:
		m.fromLegacy(ctx, owner, it.Payload, true, false)
	}
}

// Retracted carries a removed XEP-0402 bookmark to the older forms.
func (m *Module) Retracted(ctx context.Context, owner jid.JID, node, _ string) {
	if node == NS {
		m.fromNew(ctx, owner)
	}
}

// PrivateSet carries a list stored in private XML to the PEP forms.
func (m *Module) PrivateSet(ctx context.Context, owner jid.JID, key string, data []byte) {
	if key != legacyKey {
		return
	}
	if len(data) == 0 {
		data = payload.Empty(xml.Name{Space: NSLegacy, Local: "storage"})
	}
	m.fromLegacy(ctx, owner, data, false, true)
}

// fromNew rebuilds the XEP-0048 list from the XEP-0402 items (keeping
// the <url/>s of the list in private XML) and stores it in both older
// places.
func (m *Module) fromNew(ctx context.Context, owner jid.JID) {
	items, err := m.items(ctx, owner)
	if err != nil {
		m.log.Warn("bookmarks: read XEP-0402 items", "jid", owner.String(), "err", err)
		return
	}
	var confs []conference
	for _, it := range items {
		if c, ok := parseNew(it); ok {
			confs = append(confs, c)
		}
	}
	slices.SortFunc(confs, func(a, b conference) int { return strings.Compare(a.JID, b.JID) })
	_, rest, _ := m.private(ctx, owner)
	list := legacyPayload(confs, rest)
	m.putPrivate(ctx, owner, list, len(confs)+len(rest) == 0)
	if err := m.pep.Publish(ctx, owner, NSLegacy, optionsLegacy, pubsub.Item{ID: legacyID, Payload: list}); err != nil {
		m.log.Warn("bookmarks: publish XEP-0048 list", "jid", owner.String(), "err", err)
	}
}

// fromLegacy applies a XEP-0048 list to the XEP-0402 items: changed and
// new rooms published, missing ones retracted, unchanged ones left
// alone (XEP-0402: no notifications for them); then the list goes to the
// other older place (toPEP, toPrivate).
func (m *Module) fromLegacy(ctx context.Context, owner jid.JID, list []byte, toPrivate, toPEP bool) {
	confs, rest, err := parseLegacy(list)
	if err != nil {
		m.log.Info("bookmarks: unreadable XEP-0048 list", "jid", owner.String(), "err", err)
		return
	}
	items, err := m.items(ctx, owner)
	if err != nil {
		m.log.Warn("bookmarks: read XEP-0402 items", "jid", owner.String(), "err", err)
		return
	}
	old := map[string]conference{}
	for _, it := range items {
		if c, ok := parseNew(it); ok {
			old[c.JID] = c
		}
	}
	for _, c := range confs {
		o, had := old[c.JID]
		delete(old, c.JID)
		if had && o.same(c) {
			continue
		}
		c.Extensions = o.Extensions // XEP-0048 has no place for them
		if err := m.pep.Publish(ctx, owner, NS, optionsNew, pubsub.Item{ID: c.JID, Payload: newPayload(c)}); err != nil {
			m.log.Warn("bookmarks: publish XEP-0402 item", "jid", owner.String(), "room", c.JID, "err", err)
		}
	}
	for id := range old {
		if err := m.pep.Retract(ctx, owner, NS, id); err != nil {
			m.log.Warn("bookmarks: retract XEP-0402 item", "jid", owner.String(), "room", id, "err", err)
		}
	}
	if toPrivate {
		m.putPrivate(ctx, owner, list, len(confs)+len(rest) == 0)
	}
	if toPEP {
		if err := m.pep.Publish(ctx, owner, NSLegacy, optionsLegacy, pubsub.Item{ID: legacyID, Payload: list}); err != nil {
			m.log.Warn("bookmarks: publish XEP-0048 list", "jid", owner.String(), "err", err)
		}
	}
}

func (m *Module) items(ctx context.Context, owner jid.JID) ([]pubsub.Item, error) {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	items, err := m.store.PEPItems(sctx, owner.Localpart(), NS, nil, itemLimit)
	if errors.Is(err, pubsub.ErrNotFound) {
		return nil, nil
	}
	return items, err
}

// private reads the list kept in private XML.
func (m *Module) private(ctx context.Context, owner jid.JID) ([]conference, [][]byte, error) {
	sctx, cancel := m.r.StoreContext(ctx)
	b, err := m.store.Private(sctx, owner.Localpart(), legacyKey)
	cancel()
	if errors.Is(err, auth.ErrNotFound) || err == nil && len(b) == 0 {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return parseLegacy(b)
}

// putPrivate stores list in private XML; an empty one is removed.
func (m *Module) putPrivate(ctx context.Context, owner jid.JID, list []byte, empty bool) {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if empty {
		list = nil
	}
	if err := m.store.PutPrivate(sctx, owner.Localpart(), legacyKey, list); err != nil {
		m.log.Warn("bookmarks: store XEP-0048 list in private XML", "jid", owner.String(), "err", err)
	}
}
