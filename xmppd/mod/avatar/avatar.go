// Package avatar keeps an account's two avatars in step (XEP-0398): the
// User Avatar it publishes on PEP (XEP-0084) becomes the PHOTO of its
// vCard, a PHOTO it sets in its vCard is published on PEP, and the
// available presence its sessions send carries the avatar's hash
// (XEP-0153), so that clients that know only vCard avatars (and group
// chats) see it.
package avatar

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"image"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	_ "image/gif"  // image.DecodeConfig: the dimensions of a GIF avatar
	_ "image/jpeg" // and of a JPEG
	_ "image/png"  // and of a PNG

	"dialtone/pubsub"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	NSConversion = "urn:xmpp:pep-vcard-conversion:0"
	NSData       = "urn:xmpp:avatar:data"
	NSMetadata   = "urn:xmpp:avatar:metadata"
	NSUpdate     = "vcard-temp:x:update"
)

// Photos is the vCard side: mod/vcard's Module.
type Photos interface {
	// Photo returns the vCard's PHOTO (no data: none).
	Photo(ctx context.Context, owner string) (typ string, data []byte, err error)
	// SetPhoto replaces it without telling the vCard's observers.
	SetPhoto(ctx context.Context, owner, typ string, data []byte) error
}

// Publisher is the PEP side: mod/pep's Module.
type Publisher interface {
	// Publish publishes for the server without telling PEP's observers.
	Publish(ctx context.Context, owner jid.JID, node string, fields map[string]string, it pubsub.Item) error
}

// Items reads PEP items: pubsub.Store.
type Items interface {
	PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]pubsub.Item, error)
}

// Module is the conversion. Wire it as an observer of the PEP module
// (pep.Module.Observe) and of the vCard module (vcard.Module.Observe
// with VCardSet).
type Module struct {
	r      router.Routing
	photos Photos
	pep    Publisher
	items  Items
	log    *slog.Logger

	// hashes caches the SHA-1 (hex) of each online account's avatar, ""
	// for none, so that presence is stamped without a store read; an
	// account leaves it with its last session.
	mu     sync.Mutex
	hashes map[string]string
}

// New returns the conversion module.
func New(r router.Routing, photos Photos, pep Publisher, items Items, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{r: r, photos: photos, pep: pep, items: items, log: log, hashes: map[string]string{}}
}

// Register advertises the conversion on accounts, stamps the hash in
// presence and forgets an account's hash when its last session closes.
func (m *Module) Register(h *router.Hooks) error {
	h.AddFeature(router.ScopeAccount, NSConversion)
	// Before the presence module (priority 0) broadcasts and keeps it.
	h.Hook(router.PresenceOut, router.Presences, 20, m.stamp)
	h.OnSession(router.Closed, 0, func(_ context.Context, s *router.Session) {
		if len(m.r.Sessions(s.Bare())) == 0 {
			m.mu.Lock()
			delete(m.hashes, s.Bare().String())
			m.mu.Unlock()
		}
	})
	return nil
}

func (m *Module) setHash(owner jid.JID, hash string) {
	m.mu.Lock()
	m.hashes[owner.String()] = hash
	m.mu.Unlock()
}

// hash returns the SHA-1 of owner's avatar, from the cache or the vCard.
func (m *Module) hash(ctx context.Context, owner jid.JID) (string, error) {
	m.mu.Lock()
	h, ok := m.hashes[owner.String()]
	m.mu.Unlock()
	if ok {
		return h, nil
	}
	_, data, err := m.photos.Photo(ctx, owner.Localpart())
	if err != nil {
		return "", err
	}
	if len(data) > 0 {
		h = sha1Hex(data)
	}
	m.setHash(owner, h)
	return h, nil
}

func sha1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// stamp puts <x xmlns='vcard-temp:x:update'><photo>HASH</photo></x> in
// the available presence (broadcast or directed, such as a group chat
// join) of an account that has an avatar (XEP-0398 §4): appended, or in
// place of an <x/> without <photo/>; an <x/> with a <photo/>, empty or
// not, is the client's and stays.
func (m *Module) stamp(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if ev.Origin == nil || st.Type != "" {
		return nil
	}
	h, err := m.hash(ctx, ev.Origin.Bare())
	if err != nil {
		m.log.Warn("avatar: hash for presence", "jid", ev.Origin.Bare().String(), "err", err)
		return nil
	}
	if h == "" {
		return nil
	}
	start, end, hasPhoto := findUpdate(st.Inner)
	if hasPhoto {
		return nil
	}
	x := wire.NewBuilder(nil).StartNS("x", NSUpdate).Element("photo", "", h).End().Bytes()
	if start < 0 {
		start, end = len(st.Inner), len(st.Inner)
	}
	inner := make([]byte, 0, len(st.Inner)-(end-start)+len(x))
	inner = append(append(append(inner, st.Inner[:start]...), x...), st.Inner[end:]...)
	st.SetInner(inner)
	return nil
}

// findUpdate finds the vcard-temp:x:update <x/> among the children of a
// presence: its byte span (-1 when there is none) and whether it has a
// <photo/>.
func findUpdate(inner []byte) (start, end int, hasPhoto bool) {
	d := xml.NewDecoder(bytes.NewReader(inner))
	for depth, in := 0, false; ; {
		off := int(d.InputOffset())
		tok, err := d.Token()
		if err != nil {
			return -1, -1, false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1 && t.Name == xml.Name{Space: NSUpdate, Local: "x"}:
				in, start = true, off
			case depth == 2 && in && t.Name.Local == "photo":
				hasPhoto = true
			}
		case xml.EndElement:
			depth--
			if depth == 0 && in {
				return start, int(d.InputOffset()), hasPhoto
			}
		}
	}
}

// Published converts an avatar the account published on PEP to its
// vCard (XEP-0398 §3.1): the metadata's first <info/> without a url
// names the data item, whose image (checked against its SHA-1 id)
// becomes the PHOTO; metadata without <info/> (avatar disabled, XEP-0084
// §4.5) removes it.
func (m *Module) Published(ctx context.Context, owner jid.JID, node string, it pubsub.Item) {
	if node != NSMetadata {
		return
	}
	var md struct {
		XMLName xml.Name `xml:"urn:xmpp:avatar:metadata metadata"`
		Info    []struct {
			ID   string `xml:"id,attr"`
			Type string `xml:"type,attr"`
			URL  string `xml:"url,attr"`
		} `xml:"info"`
	}
	if err := xml.Unmarshal(it.Payload, &md); err != nil {
		return
	}
	typ, id := "", ""
	for _, i := range md.Info {
		if i.URL == "" && i.ID != "" {
			typ, id = i.Type, strings.ToLower(i.ID)
			break
		}
	}
	var data []byte
	if id != "" {
		sctx, cancel := m.r.StoreContext(ctx)
		items, err := m.items.PEPItems(sctx, owner.Localpart(), NSData, []string{id}, 1)
		cancel()
		if err != nil || len(items) == 0 {
			m.log.Info("avatar: metadata names no stored data", "jid", owner.String(), "id", id, "err", err)
			return
		}
		var d struct {
			XMLName xml.Name `xml:"urn:xmpp:avatar:data data"`
			B64     string   `xml:",chardata"`
		}
		if xml.Unmarshal(items[0].Payload, &d) != nil {
			return
		}
		data, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(d.B64), ""))
		if err != nil || len(data) == 0 || sha1Hex(data) != id {
			m.log.Info("avatar: data does not match its id", "jid", owner.String(), "id", id)
			return
		}
	}
	if err := m.photos.SetPhoto(ctx, owner.Localpart(), typ, data); err != nil {
		m.log.Warn("avatar: PEP avatar to vCard", "jid", owner.String(), "err", err)
		return
	}
	m.setHash(owner, id)
}

// Retracted is part of pep.Observer; a retracted avatar item changes
// nothing (disabling is publishing empty metadata).
func (m *Module) Retracted(context.Context, jid.JID, string, string) {}

// VCardSet converts a PHOTO the account set in its vCard to PEP
// (XEP-0398 §3.2): the image on the data node under its SHA-1, then one
// <info/> on the metadata node, which notifies its readers. The nodes
// are created open: the vCard already shows the photo to anyone. A photo
// that is already the published one is not published again.
func (m *Module) VCardSet(ctx context.Context, owner jid.JID, _ []byte) {
	typ, data, err := m.photos.Photo(ctx, owner.Localpart())
	if err != nil {
		m.log.Warn("avatar: vCard photo", "jid", owner.String(), "err", err)
		return
	}
	if len(data) == 0 {
		m.setHash(owner, "")
		return
	}
	id := sha1Hex(data)
	m.mu.Lock()
	same := m.hashes[owner.String()] == id
	m.mu.Unlock()
	if same {
		return
	}
	open := map[string]string{pubsub.FieldAccessModel: pubsub.AccessOpen}
	d := wire.NewBuilder(nil).StartNS("data", NSData).Text(base64.StdEncoding.EncodeToString(data)).End().Bytes()
	if err := m.pep.Publish(ctx, owner, NSData, open, pubsub.Item{ID: id, Payload: d}); err != nil {
		m.log.Warn("avatar: vCard photo to PEP data", "jid", owner.String(), "err", err)
		return
	}
	attrs := []string{"id", id, "bytes", strconv.Itoa(len(data))}
	if typ != "" {
		attrs = append(attrs, "type", typ)
	}
	if c, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		attrs = append(attrs, "width", strconv.Itoa(c.Width), "height", strconv.Itoa(c.Height))
	}
	md := wire.NewBuilder(nil).StartNS("metadata", NSMetadata).Start("info", attrs...).End().End().Bytes()
	if err := m.pep.Publish(ctx, owner, NSMetadata, open, pubsub.Item{ID: id, Payload: md}); err != nil {
		m.log.Warn("avatar: vCard photo to PEP metadata", "jid", owner.String(), "err", err)
		return
	}
	m.setHash(owner, id)
}
