// Package phonebook serves contact discovery as the Quicksy app speaks it
// (namespace im.quicksy.synchronization:0, SPEC.md "App API (compatible
// with Quicksy) and contact discovery"): an account sends the numbers of
// its phone book to api.DOMAIN and learns which of them are on this
// server. Phone books are never stored or logged; only counts are kept.
package phonebook

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// NS is the namespace of the phone-book query (Quicksy's
// Namespace.SYNCHRONIZATION).
const NS = "im.quicksy.synchronization:0"

// DefaultPerDay is XMPPD_DISCOVERY_PER_DAY's default.
const DefaultPerDay = 2048

// Store finds the accounts that may be discovered. Implemented by package
// storage.
type Store interface {
	// Discoverable returns those of numbers (canonical, each once) that
	// have an active account that has not opted out, in ascending order.
	Discoverable(ctx context.Context, numbers []string) ([]string, error)
}

// Module answers the phone-book query at api.DOMAIN, a disco item of the
// domain.
type Module struct {
	r      router.Routing
	parser *auth.NumberParser
	store  Store
	// PerDay caps the distinct numbers one account may look up in a day
	// (XMPPD_DISCOVERY_PER_DAY); 0: no cap. Set it before Register.
	PerDay int
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	host  string
	quota *quota
}

// New returns the contact discovery module of r's domain; parser reads
// the numbers of phone books, which may come in any accepted form.
func New(r router.Routing, parser *auth.NumberParser, store Store) *Module {
	return &Module{r: r, parser: parser, store: store, PerDay: DefaultPerDay}
}

// Host is the component host that answers: api.DOMAIN, as the app has it
// built in (QuickConversationsService.API_DOMAIN).
func Host(domain string) string { return "api." + domain }

// Register serves api.DOMAIN: the phone-book query, and disco#info and
// disco#items on it; the domain lists it as a disco item.
func (m *Module) Register(h *router.Hooks) error {
	m.host = Host(m.r.Domain())
	m.quota = newQuota()
	sc := h.AddHost(m.host)
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: NS, Local: "phone-book"}, m.phoneBook)
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: disco.NSInfo, Local: "query"}, m.info)
	h.HandleIQ(sc, router.IQGet, xml.Name{Space: disco.NSItems, Local: "query"}, m.items)
	h.AddIdentity(sc, identity)
	h.AddFeature(sc, disco.NSInfo)
	h.AddFeature(sc, disco.NSItems)
	h.AddFeature(sc, NS)
	h.AddItem(router.ScopeServer, router.DiscoItem{JID: m.host, Name: identity.Name})
	return nil
}

// identity is api.DOMAIN's: a directory of the server's users (XEP-0030
// registry, category directory, type user).
var identity = router.Identity{Category: "directory", Type: "user", Name: "Contact discovery"}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// info answers disco#info on api.DOMAIN (the disco module answers for the
// domain and accounts only).
func (m *Module) info(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if err := noNode(iq); err != nil {
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("query", disco.NSInfo)
	b.Start("identity", "category", identity.Category, "type", identity.Type, "name", identity.Name).End()
	for _, f := range []string{disco.NSInfo, disco.NSItems, NS} {
		b.Start("feature", "var", f).End()
	}
	return b.End().Bytes(), nil
}

// items answers disco#items on api.DOMAIN: it has none.
func (m *Module) items(_ context.Context, iq *router.Stanza) ([]byte, error) {
	if err := noNode(iq); err != nil {
		return nil, err
	}
	return wire.NewBuilder(nil).StartNS("query", disco.NSItems).End().Bytes(), nil
}

// noNode refuses a disco query for a node: api.DOMAIN has none.
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

// request is a phone-book query as read: its ver and its numbers,
// canonical and each once, in the order first asked.
type request struct {
	ver     string
	numbers []auth.Number
	entries int // <entry/> elements, numbers or not
}

// errTooMany stops reading a phone book with more distinct numbers than
// a day's cap: it could never be answered.
var errTooMany = fmt.Errorf("phone book: too many numbers")

// read parses the phone book of iq. Entries whose number is not a valid
// number (or none) are skipped; limit > 0 stops at more than limit
// distinct numbers with errTooMany, so that the numbers kept and parsed
// are bounded by the cap as well as by the stanza's size.
func (m *Module) read(iq *router.Stanza, limit int) (request, error) {
	r, start, err := payload.Open(iq)
	if err != nil {
		return request{}, err
	}
	var req request
	req.ver, _ = payload.Attr(start, "ver")
	seen := make(map[auth.Number]struct{})
	for {
		child, ok, err := payload.NextChild(r)
		if err != nil {
			return request{}, err
		}
		if !ok {
			return req, nil
		}
		if err := payload.Skip(r); err != nil {
			return request{}, err
		}
		if child.Name != (xml.Name{Space: NS, Local: "entry"}) {
			continue
		}
		req.entries++
		raw, _ := payload.Attr(child, "number")
		n, err := m.parser.Parse(raw)
		if err != nil {
			continue // not a number: nobody has it
		}
		if _, dup := seen[n]; dup {
			continue
		}
		if limit > 0 && len(seen) >= limit {
			return request{}, errTooMany
		}
		seen[n] = struct{}{}
		req.numbers = append(req.numbers, n)
	}
}

// phoneBook answers the phone-book query: the entries whose numbers have
// an active account that has not opted out, sorted by number, each with
// its JID; no payload when the asker's ver says it has that answer.
func (m *Module) phoneBook(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	// Only the server's own users: a remote user would be harvesting our
	// users' numbers for a server that answers to nobody here.
	asker := iq.From.Localpart()
	if iq.From.Domainpart() != m.r.Domain() || asker == "" {
		return nil, router.NewError(stanza.Auth, stanza.NotAuthorized, "contact discovery is for this server's users")
	}
	req, err := m.read(iq, m.PerDay)
	if err == errTooMany {
		return nil, m.overCap()
	}
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if !m.quota.admit(asker, req.numbers, m.now(), m.PerDay) {
		return nil, m.overCap()
	}
	numbers := make([]string, len(req.numbers))
	for i, n := range req.numbers {
		numbers[i] = string(n)
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	found, err := m.store.Discoverable(sctx, numbers)
	if err != nil {
		// The error names no number: phone books are never logged.
		return nil, fmt.Errorf("phone book of %d numbers: %w", len(numbers), err)
	}
	slices.Sort(found) // Ver's order, whatever the store's
	entries := make([]Entry, 0, len(found))
	for _, n := range found {
		entries = append(entries, Entry{Number: n, JIDs: []string{n + "@" + m.r.Domain()}})
	}
	ver := Ver(entries)
	if req.ver == ver {
		return nil, nil // the app has this answer (Quicksy: "remains unchanged")
	}
	b := wire.NewBuilder(make([]byte, 0, 64+len(entries)*(64+2*len(m.r.Domain()))))
	b.StartNS("phone-book", NS, "ver", ver)
	for _, e := range entries {
		b.Start("entry", "number", e.Number)
		for _, j := range e.JIDs {
			b.Element("jid", "", j)
		}
		b.End()
	}
	return b.End().Bytes(), nil
}

func (m *Module) overCap() error {
	return router.NewError(stanza.Modify, stanza.PolicyViolation,
		"more than "+strconv.Itoa(m.PerDay)+" numbers a day")
}

// Entry is one entry of an answer: a number and the JIDs that have it.
type Entry struct {
	Number string
	JIDs   []string
}

// Ver is the ver of an answer as Quicksy defines it (Entry.statusQuo):
// the entries sorted by number, each its number followed by U+001E and a
// JID for each of its JIDs (sorted), the entries joined by U+001D; the
// base64 (with padding) of the SHA-1 of that in UTF-8. entries must be
// sorted by number, each's JIDs sorted.
func Ver(entries []Entry) string {
	var s strings.Builder
	for i, e := range entries {
		if i > 0 {
			s.WriteByte('\x1d')
		}
		s.WriteString(e.Number)
		for _, j := range e.JIDs {
			s.WriteByte('\x1e')
			s.WriteString(j)
		}
	}
	sum := sha1.Sum([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}
