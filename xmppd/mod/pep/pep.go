// Package pep makes every account's bare JID a personal eventing service
// (XEP-0163) with the XEP-0060 subset of SPEC.md "Personal data and
// encryption": publish with auto-create and publish-options, retract,
// items, subscribe, node creation, configuration and deletion, the open,
// presence and whitelist access models, notifications filtered by the
// XEP-0115 "+notify" interest of each contact's resources, and the last
// items sent to a resource that comes online. The rules are package
// pubsub's; nodes and items are kept by its Store.
//
// Notifications reach local resources (the owner's and its local presence
// subscribers', by their caps) and explicit subscribers; remote presence
// subscribers get them only by subscribing explicitly: the server does not
// track the caps of remote resources.
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"dialtone/auth"
	"dialtone/pubsub"
	"dialtone/roster"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Namespaces of XEP-0060.
const (
	NS       = "http://jabber.org/protocol/pubsub"
	NSOwner  = NS + "#owner"
	NSEvent  = NS + "#event"
	NSErrors = NS + "#errors"
	nsData   = "jabber:x:data"
)

// Defaults of the size caps (SPEC.md).
const (
	DefaultMaxItems     = 256
	DefaultMaxItemBytes = 65536
)

// Features are the pubsub features advertised on every account (SPEC.md
// lists them; clients such as Monal check them all).
var Features = []string{"publish", "publish-options", "auto-create", "create-nodes", "delete-items",
	"delete-nodes", "retrieve-items", "subscribe", "filtered-notifications", "persistent-items",
	"item-ids", "multi-items", "config-node", "config-node-max", "access-presence", "access-open",
	"access-whitelist"}

// Rosters is what the module reads of rosters: roster.Store.
type Rosters interface {
	Roster(ctx context.Context, owner string) ([]roster.Item, int64, error)
	RosterItem(ctx context.Context, owner, contact string) (roster.Item, error)
}

// Module is the PEP service.
type Module struct {
	r       router.Routing
	store   pubsub.Store
	rosters Rosters
	log     *slog.Logger
	// MaxItems is XMPPD_PEP_MAX_ITEMS, MaxItemBytes XMPPD_PEP_MAX_ITEM_BYTES;
	// zero: the defaults. Set them before Register.
	MaxItems, MaxItemBytes int

	query func(ctx context.Context, full jid.JID, typ string, payload []byte) (*router.Stanza, error)
	spawn func(f func(ctx context.Context)) bool
	caps  capsCache

	observers []Observer
}

// Observer is told of what an account changed in its own PEP service,
// after it is stored and notified (the conversions of XEP-0398 and
// XEP-0402 are observers). What the server publishes itself (Publish,
// Retract) is not told.
type Observer interface {
	Published(ctx context.Context, owner jid.JID, node string, it pubsub.Item)
	Retracted(ctx context.Context, owner jid.JID, node, id string)
}

// Observe adds an observer. Call it before Register.
func (m *Module) Observe(o Observer) { m.observers = append(m.observers, o) }

// New returns the PEP module.
func New(r router.Routing, store pubsub.Store, rosters Rosters, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{r: r, store: store, rosters: rosters, log: log}
}

func (m *Module) maxItems() int {
	if m.MaxItems > 0 {
		return m.MaxItems
	}
	return DefaultMaxItems
}

func (m *Module) maxItemBytes() int {
	if m.MaxItemBytes > 0 {
		return m.MaxItemBytes
	}
	return DefaultMaxItemBytes
}

// Register adds the pubsub handlers on accounts, the pubsub/pep identity
// and features, and follows resources' caps and availability.
func (m *Module) Register(h *router.Hooks) error {
	if r := h.Router(); r != nil {
		m.query, m.spawn = r.QuerySession, r.Go
	}
	both := router.IQGet | router.IQSet
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: NS, Local: "pubsub"}, m.handle)
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: NSOwner, Local: "pubsub"}, m.handleOwner)
	h.AddIdentity(router.ScopeAccount, router.Identity{Category: "pubsub", Type: "pep"})
	h.AddFeature(router.ScopeAccount, NS)
	for _, f := range Features {
		h.AddFeature(router.ScopeAccount, NS+"#"+f)
	}
	// Caps of later presence updates; the first one is the Available event.
	h.Hook(router.PresenceOut, router.Presences, 10, func(ctx context.Context, ev *router.Event) error {
		st := ev.Stanza
		if ev.Origin != nil && st.Type == "" && st.To.Equal(jid.JID{}) && ev.Origin.Available() {
			m.learnCaps(ev.Origin, st, false)
		}
		return nil
	})
	h.OnSession(router.Available, 0, func(_ context.Context, s *router.Session) {
		if p := s.Presence(); p != nil {
			m.learnCaps(s, p, true)
		}
	})
	return nil
}

// --- errors ---------------------------------------------------------------

func pubsubError(typ stanza.ErrorType, cond stanza.Condition, app string) error {
	if app == "" {
		return router.NewError(typ, cond, "")
	}
	return router.NewAppError(typ, cond, NSErrors, app)
}

var (
	errBadRequest   = router.NewError(stanza.Modify, stanza.BadRequest, "")
	errForbidden    = router.NewError(stanza.Auth, stanza.Forbidden, "")
	errNoNode       = router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	errNodeRequired = pubsubError(stanza.Modify, stanza.BadRequest, "nodeid-required")
	errPrecondition = pubsubError(stanza.Cancel, stanza.Conflict, "precondition-not-met")
	errTooBig       = pubsubError(stanza.Modify, stanza.NotAcceptable, "payload-too-big")
	errBadConfig    = pubsubError(stanza.Modify, stanza.NotAcceptable, "unsupported-access-model")
)

func unsupported(feature string) error {
	e := router.NewAppError(stanza.Cancel, stanza.FeatureNotImplemented, NSErrors, "unsupported")
	e.App = wire.NewBuilder(nil).StartNS("unsupported", NSErrors, "feature", feature).End().Bytes()
	return e
}

// accessError is the error of a read refused by the access model
// (XEP-0060 §6.1.3.2, §6.1.3.4).
func accessError(c pubsub.Config) error {
	if c.AccessModel == pubsub.AccessPresence {
		return pubsubError(stanza.Auth, stanza.NotAuthorized, "presence-subscription-required")
	}
	return pubsubError(stanza.Cancel, stanza.NotAllowed, "closed-node")
}

// storeErr maps pubsub.ErrNotFound to item-not-found and wraps the rest.
func storeErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pubsub.ErrNotFound) {
		return errNoNode
	}
	return fmt.Errorf("pep: %s: %w", what, err)
}

// --- requests -------------------------------------------------------------

// request is a parsed <pubsub/>: the action element with its children
// read as far as the action needs, and publish-options.
type request struct {
	action  string
	node    string
	attrs   xml.StartElement
	items   []pubsub.Item // publish: the item; retract, items: the ids asked for
	fields  map[string]string
	formErr bool
}

// parse reads the children of <pubsub/> (XEP-0060 Schema): one action,
// publish-options or configure beside it.
func (m *Module) parse(iq *router.Stanza) (request, error) {
	var req request
	r, _, err := payload.Open(iq)
	if err != nil {
		return req, errBadRequest
	}
	for {
		start, ok, err := payload.NextChild(r)
		if err != nil {
			return req, errBadRequest
		}
		if !ok {
			break
		}
		switch start.Name.Local {
		case "publish-options", "configure":
			if req.action != "" && start.Name.Local == "configure" && req.action != "create" {
				return req, errBadRequest
			}
			req.fields, err = readForm(r)
			if err != nil {
				req.formErr = true
			}
			if start.Name.Local == "configure" && req.action == "" {
				req.action, req.attrs = "configure", start
				req.node, _ = payload.Attr(start, "node")
			}
			continue
		}
		if req.action != "" {
			return req, errBadRequest // one action per request
		}
		req.action, req.attrs = start.Name.Local, start
		req.node, _ = payload.Attr(start, "node")
		if err := m.readItems(r, &req); err != nil {
			return req, err
		}
	}
	if req.action == "" {
		return req, errBadRequest
	}
	return req, nil
}

// readItems reads the <item/> children of an action (the payload only
// for publish, bounded by XMPPD_PEP_MAX_ITEM_BYTES).
func (m *Module) readItems(r xml.TokenReader, req *request) error {
	for {
		start, ok, err := payload.NextChild(r)
		if err != nil {
			return errBadRequest
		}
		if !ok {
			return nil
		}
		if start.Name.Local != "item" {
			if err := payload.Skip(r); err != nil {
				return errBadRequest
			}
			continue
		}
		id, _ := payload.Attr(start, "id")
		it := pubsub.Item{ID: id}
		if req.action == "publish" {
			child, ok, err := payload.NextChild(r)
			if err != nil {
				return errBadRequest
			}
			if !ok {
				return pubsubError(stanza.Modify, stanza.BadRequest, "payload-required")
			}
			it.Payload, err = payload.Copy(r, child, m.maxItemBytes())
			if errors.Is(err, payload.ErrTooLarge) {
				return errTooBig
			}
			if err != nil {
				return payload.Error(err, "item")
			}
			// One payload per item (XEP-0060 §7.1.3.6).
			if _, more, err := payload.NextChild(r); err != nil || more {
				return pubsubError(stanza.Modify, stanza.BadRequest, "invalid-payload")
			}
		} else if err := payload.Skip(r); err != nil {
			return errBadRequest
		}
		req.items = append(req.items, it)
	}
}

// readForm reads a data form (XEP-0004): var → first value. Its
// FORM_TYPE is not checked against the context: clients send both
// node_config and publish-options forms with the same fields.
func readForm(r xml.TokenReader) (map[string]string, error) {
	fields := map[string]string{}
	for {
		x, ok, err := payload.NextChild(r)
		if err != nil {
			return nil, err
		}
		if !ok {
			return fields, nil
		}
		if x.Name != (xml.Name{Space: nsData, Local: "x"}) {
			if err := payload.Skip(r); err != nil {
				return nil, err
			}
			continue
		}
		if typ, _ := payload.Attr(x, "type"); typ == "cancel" {
			return nil, payload.Skip(r)
		}
		var form struct {
			Fields []struct {
				Var    string   `xml:"var,attr"`
				Values []string `xml:"value"`
			} `xml:"jabber:x:data field"`
		}
		if err := xml.NewTokenDecoder(r).DecodeElement(&form, &x); err != nil {
			return nil, err
		}
		for _, f := range form.Fields {
			if f.Var != "FORM_TYPE" && len(f.Values) > 0 {
				fields[f.Var] = f.Values[0]
			}
		}
	}
}

// relation is what from is to the owner of the service: the owner, a
// contact subscribed to the owner's presence, or neither.
func (m *Module) relation(ctx context.Context, owner, from jid.JID) (pubsub.Relation, error) {
	if from.Bare().Equal(owner) {
		return pubsub.Owner, nil
	}
	ctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	it, err := m.rosters.RosterItem(ctx, owner.Localpart(), from.Bare().String())
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return pubsub.Stranger, nil
	case err != nil:
		return 0, fmt.Errorf("pep: roster of %s: %w", owner, err)
	case roster.HasFrom(it):
		return pubsub.Subscriber, nil
	}
	return pubsub.Stranger, nil
}

func (m *Module) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	req, err := m.parse(iq)
	if err != nil {
		return nil, err
	}
	owner := iq.To.Bare()
	set := iq.Type == "set"
	switch {
	case req.action == "publish" && set:
		return m.publish(ctx, iq, owner, req)
	case req.action == "retract" && set:
		return m.retract(ctx, iq, owner, req)
	case req.action == "create" && set:
		return m.create(ctx, iq, owner, req)
	case req.action == "items" && !set:
		return m.itemsIQ(ctx, iq, owner, req)
	case req.action == "subscribe" && set:
		return m.subscribe(ctx, iq, owner, req)
	case req.action == "unsubscribe" && set:
		return m.unsubscribe(ctx, iq, owner, req)
	case req.action == "subscriptions" && !set:
		return m.subscriptions(ctx, iq, owner, req)
	case req.action == "configure" && set:
		return nil, unsupported("config-node") // the owner namespace configures
	}
	switch req.action {
	case "publish", "retract", "create", "items", "subscribe", "unsubscribe", "subscriptions":
		return nil, errBadRequest // the wrong iq type
	case "affiliations":
		return nil, unsupported("retrieve-affiliations")
	case "options":
		return nil, unsupported("subscription-options")
	case "default":
		return nil, unsupported("retrieve-default")
	}
	return nil, errBadRequest
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// publish handles XEP-0060 §7.1 with auto-create (§7.1.4) and
// publish-options (§7.1.5).
func (m *Module) publish(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, errForbidden
	}
	if req.node == "" {
		return nil, errNodeRequired
	}
	if len(req.items) != 1 {
		return nil, pubsubError(stanza.Modify, stanza.BadRequest, "item-required")
	}
	if req.formErr {
		return nil, errBadRequest
	}
	it := req.items[0]
	if it.ID == "" {
		it.ID = newID()
	}
	if err := m.put(ctx, owner, req.node, req.fields, it, true); err != nil {
		return nil, err
	}
	for _, o := range m.observers {
		o.Published(ctx, owner, req.node, it)
	}
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NS).Start("publish", "node", req.node).Start("item", "id", it.ID).End()
	return b.End().Bytes(), nil
}

// put stores it on owner's node, creating the node with fields applied
// to the default configuration, checks fields as preconditions on an
// existing node when check is set, and notifies.
func (m *Module) put(ctx context.Context, owner jid.JID, node string, fields map[string]string, it pubsub.Item, check bool) error {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	cfg, err := m.store.PEPNode(sctx, owner.Localpart(), node)
	switch {
	case err == nil:
		if check && pubsub.Preconditions(cfg, fields, m.maxItems()) != nil {
			return errPrecondition
		}
	case errors.Is(err, pubsub.ErrNotFound):
		if cfg, err = pubsub.Apply(pubsub.Default(), fields, m.maxItems()); err != nil {
			return errPrecondition
		}
	default:
		return storeErr(err, "publish")
	}
	cfg, _, err = m.store.PublishPEPItem(sctx, owner.Localpart(), node, cfg, it)
	if err != nil {
		return storeErr(err, "publish")
	}
	m.notify(ctx, owner, node, cfg, itemsEvent(node, it))
	return nil
}

// Publish publishes it on owner's node for the server itself (a
// conversion between protocols): an existing node keeps its
// configuration, a new one gets fields applied to the default one; the
// node's readers are notified, the observers are not. The item is held
// to XMPPD_PEP_MAX_ITEM_BYTES like a client's.
func (m *Module) Publish(ctx context.Context, owner jid.JID, node string, fields map[string]string, it pubsub.Item) error {
	if len(it.Payload) > m.maxItemBytes() {
		return fmt.Errorf("pep: item of %d bytes for %s on %s: %w", len(it.Payload), node, owner, payload.ErrTooLarge)
	}
	return m.put(ctx, owner, node, fields, it, false)
}

// Retract removes an item of owner's node for the server itself, with
// a notification when the node asks for them; the observers are not
// told. An item or node that is not there is no error.
func (m *Module) Retract(ctx context.Context, owner jid.JID, node, id string) error {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	cfg, err := m.store.PEPNode(sctx, owner.Localpart(), node)
	if err == nil {
		err = m.store.RetractPEPItem(sctx, owner.Localpart(), node, id)
	}
	switch {
	case errors.Is(err, pubsub.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("pep: retract %s of %s on %s: %w", id, node, owner, err)
	}
	if cfg.NotifyRetract {
		m.notify(ctx, owner, node, cfg, retractEvent(node, id))
	}
	return nil
}

func retractEvent(node, id string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("event", NSEvent).Start("items", "node", node).Start("retract", "id", id).End()
	return b.End().Bytes()
}

// itemsEvent is the <event/> of a published item.
func itemsEvent(node string, it pubsub.Item) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("event", NSEvent).Start("items", "node", node).Start("item", "id", it.ID).Raw(it.Payload).End()
	return b.End().Bytes()
}

func (m *Module) retract(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, errForbidden
	}
	if req.node == "" {
		return nil, errNodeRequired
	}
	if len(req.items) != 1 || req.items[0].ID == "" {
		return nil, pubsubError(stanza.Modify, stanza.BadRequest, "item-required")
	}
	id := req.items[0].ID
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	cfg, err := m.store.PEPNode(sctx, owner.Localpart(), req.node)
	if err != nil {
		return nil, storeErr(err, "retract")
	}
	if err := m.store.RetractPEPItem(sctx, owner.Localpart(), req.node, id); err != nil {
		return nil, storeErr(err, "retract")
	}
	if n, _ := payload.Attr(req.attrs, "notify"); (n == "1" || n == "true") && cfg.NotifyRetract {
		m.notify(ctx, owner, req.node, cfg, retractEvent(req.node, id))
	}
	for _, o := range m.observers {
		o.Retracted(ctx, owner, req.node, id)
	}
	return nil, nil
}

func (m *Module) create(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, errForbidden
	}
	if req.node == "" {
		return nil, pubsubError(stanza.Modify, stanza.NotAcceptable, "nodeid-required") // no instant nodes
	}
	if req.formErr {
		return nil, errBadRequest
	}
	cfg, err := pubsub.Apply(pubsub.Default(), req.fields, m.maxItems())
	if err != nil {
		return nil, errBadConfig
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if _, err := m.store.PEPNode(sctx, owner.Localpart(), req.node); err == nil {
		return nil, router.NewError(stanza.Cancel, stanza.Conflict, "")
	} else if !errors.Is(err, pubsub.ErrNotFound) {
		return nil, storeErr(err, "create")
	}
	if err := m.store.PutPEPNode(sctx, owner.Localpart(), req.node, cfg); err != nil {
		return nil, storeErr(err, "create")
	}
	return nil, nil
}

// readable returns the node's configuration when from may read it.
func (m *Module) readable(ctx context.Context, owner, from jid.JID, node string) (pubsub.Config, error) {
	if node == "" {
		return pubsub.Config{}, errNodeRequired
	}
	rel, err := m.relation(ctx, owner, from)
	if err != nil {
		return pubsub.Config{}, err
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	cfg, err := m.store.PEPNode(sctx, owner.Localpart(), node)
	if err != nil {
		return cfg, storeErr(err, "node")
	}
	if !pubsub.CanRead(cfg, rel) {
		return cfg, accessError(cfg)
	}
	return cfg, nil
}

// itemsIQ answers XEP-0060 §6.5: all items, the max_items newest, or
// those asked for by id, oldest first.
func (m *Module) itemsIQ(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	if _, err := m.readable(ctx, owner, iq.From, req.node); err != nil {
		return nil, err
	}
	max := 0
	if s, ok := payload.Attr(req.attrs, "max_items"); ok {
		if _, err := fmt.Sscan(s, &max); err != nil || max < 1 {
			return nil, errBadRequest
		}
	}
	var ids []string
	for _, it := range req.items {
		if it.ID != "" {
			ids = append(ids, it.ID)
		}
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	items, err := m.store.PEPItems(sctx, owner.Localpart(), req.node, ids, max)
	if err != nil {
		return nil, storeErr(err, "items")
	}
	slices.Reverse(items)
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NS).Start("items", "node", req.node)
	for _, it := range items {
		b.Start("item", "id", it.ID).Raw(it.Payload).End()
	}
	return b.End().End().Bytes(), nil
}

func (m *Module) subscribe(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	sub, err := subscriber(iq, req)
	if err != nil {
		return nil, err
	}
	cfg, err := m.readable(ctx, owner, iq.From, req.node)
	if err != nil {
		return nil, err
	}
	sctx, cancel := m.r.StoreContext(ctx)
	err = m.store.SubscribePEP(sctx, owner.Localpart(), req.node, sub.String())
	cancel()
	if err != nil {
		return nil, storeErr(err, "subscribe")
	}
	if cfg.SendLast != pubsub.SendNever {
		m.sendLast(ctx, owner, req.node, sub)
	}
	return subscriptionElem(req.node, sub, "subscribed"), nil
}

// subscriber is the JID of a (un)subscribe request, which must be the
// requester's, bare or full (XEP-0060 §6.1.3.1).
func subscriber(iq *router.Stanza, req request) (jid.JID, error) {
	s, _ := payload.Attr(req.attrs, "jid")
	j, err := jid.Parse(s)
	if err != nil || !j.Bare().Equal(iq.From.Bare()) {
		return jid.JID{}, pubsubError(stanza.Modify, stanza.BadRequest, "invalid-jid")
	}
	return j, nil
}

func subscriptionElem(node string, sub jid.JID, state string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NS).Start("subscription", "node", node, "jid", sub.String(), "subscription", state).End()
	return b.End().Bytes()
}

func (m *Module) unsubscribe(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	sub, err := subscriber(iq, req)
	if err != nil {
		return nil, err
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	err = m.store.UnsubscribePEP(sctx, owner.Localpart(), req.node, sub.String())
	if errors.Is(err, pubsub.ErrNotFound) {
		return nil, pubsubError(stanza.Cancel, stanza.UnexpectedRequest, "not-subscribed")
	}
	if err != nil {
		return nil, storeErr(err, "unsubscribe")
	}
	return nil, nil
}

// subscriptions lists the requester's subscriptions to this service
// (XEP-0060 §5.6).
func (m *Module) subscriptions(ctx context.Context, iq *router.Stanza, owner jid.JID, req request) ([]byte, error) {
	sctx, cancel := m.r.StoreContext(ctx)
	subs, err := m.store.PEPSubscriptions(sctx, owner.Localpart(), req.node)
	cancel()
	if err != nil {
		return nil, storeErr(err, "subscriptions")
	}
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NS).Start("subscriptions")
	for _, s := range subs {
		if j, err := jid.Parse(s.JID); err == nil && j.Bare().Equal(iq.From.Bare()) {
			b.Start("subscription", "node", s.Node, "jid", s.JID, "subscription", "subscribed").End()
		}
	}
	return b.End().End().Bytes(), nil
}

// --- owner ----------------------------------------------------------------

func (m *Module) handleOwner(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, errForbidden
	}
	req, err := m.parse(iq)
	if err != nil {
		return nil, err
	}
	owner := iq.To.Bare()
	if req.node == "" && (req.action == "configure" || req.action == "delete") {
		return nil, errNodeRequired
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	switch {
	case req.action == "configure" && iq.Type == "get":
		cfg, err := m.store.PEPNode(sctx, owner.Localpart(), req.node)
		if err != nil {
			return nil, storeErr(err, "configure")
		}
		return m.configForm(req.node, cfg), nil
	case req.action == "configure":
		if req.formErr {
			return nil, errBadRequest
		}
		cfg, err := m.store.PEPNode(sctx, owner.Localpart(), req.node)
		if err != nil {
			return nil, storeErr(err, "configure")
		}
		if cfg, err = pubsub.Apply(cfg, req.fields, m.maxItems()); err != nil {
			return nil, errBadConfig
		}
		return nil, storeErr(m.store.PutPEPNode(sctx, owner.Localpart(), req.node, cfg), "configure")
	case req.action == "delete" && iq.Type == "set":
		cfg, err := m.store.PEPNode(sctx, owner.Localpart(), req.node)
		if err != nil {
			return nil, storeErr(err, "delete")
		}
		// Read before they go with the node: they are told of it.
		subs := m.subscribers(ctx, owner, req.node)
		if err := m.store.DeletePEPNode(sctx, owner.Localpart(), req.node); err != nil {
			return nil, storeErr(err, "delete")
		}
		b := wire.NewBuilder(nil)
		b.StartNS("event", NSEvent).Start("delete", "node", req.node).End()
		m.notifyTo(ctx, owner, req.node, cfg, subs, b.End().Bytes())
		return nil, nil
	case req.action == "purge":
		return nil, unsupported("purge-nodes")
	case req.action == "affiliations":
		return nil, unsupported("modify-affiliations")
	case req.action == "subscriptions":
		return nil, unsupported("manage-subscriptions")
	case req.action == "default":
		return nil, unsupported("retrieve-default")
	}
	return nil, errBadRequest
}

// configForm is the node configuration form (XEP-0060 §8.2).
func (m *Module) configForm(node string, c pubsub.Config) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("pubsub", NSOwner).Start("configure", "node", node)
	b.StartNS("x", nsData, "type", "form")
	b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", pubsub.FormTypeConfig).End()
	field := func(name, typ, value string, options ...string) {
		b.Start("field", "var", name, "type", typ).Element("value", "", value)
		for _, o := range options {
			b.Start("option").Element("value", "", o).End()
		}
		b.End()
	}
	field(pubsub.FieldAccessModel, "list-single", c.AccessModel, pubsub.AccessOpen, pubsub.AccessPresence, pubsub.AccessWhitelist)
	field(pubsub.FieldMaxItems, "text-single", fmt.Sprint(c.MaxItems))
	field(pubsub.FieldPersistItems, "boolean", "1")
	field(pubsub.FieldSendLast, "list-single", c.SendLast, pubsub.SendNever, pubsub.SendOnSub, pubsub.SendOnSubAndPresence)
	field(pubsub.FieldNotifyRetract, "boolean", boolValue(c.NotifyRetract))
	field(pubsub.FieldDeliverNotif, "boolean", "1")
	field(pubsub.FieldDeliverPay, "boolean", "1")
	field(pubsub.FieldPublishModel, "list-single", "publishers", "publishers")
	field(pubsub.FieldTitle, "text-single", c.Title)
	field(pubsub.FieldType, "text-single", c.Type)
	return b.End().End().End().Bytes()
}

func boolValue(v bool) string {
	if v {
		return "1"
	}
	return "0"
}
