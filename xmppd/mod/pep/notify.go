package pep

import (
	"bytes"
	"context"
	"encoding/xml"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"dialtone/pubsub"
	"dialtone/roster"
	"dialtone/xmppd/mod/disco"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/jid"
)

const nsCaps = "http://jabber.org/protocol/caps"

// maxCaps bounds the cache of verified caps hashes; past it the cache
// starts afresh (a handful of client versions fill it in practice).
const maxCaps = 4096

// capsCache maps a verified XEP-0115 ver to the features it stands for,
// so that each client version's disco#info is asked once.
type capsCache struct {
	mu sync.Mutex
	m  map[string]map[string]bool
}

func (c *capsCache) get(ver string) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[ver]
}

func (c *capsCache) put(ver string, f map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCaps {
		c.m = make(map[string]map[string]bool)
	}
	c.m[ver] = f
}

// interest is a session's XEP-0115 features, once known.
type interest struct {
	features atomic.Pointer[map[string]bool]
	ver      atomic.Pointer[string]
}

var interestKey = router.NewKey[interest]()

// wants reports whether the session asked for notifications of node.
func wants(s *router.Session, node string) bool {
	f := interestKey.Get(s).features.Load()
	return f != nil && (*f)[node+"+notify"]
}

// capsOf reads the <c/> element of a presence.
func capsOf(p *router.Stanza) (node, ver, hash string) {
	d := xml.NewDecoder(bytes.NewReader(p.Inner))
	for depth := 0; ; {
		tok, err := d.Token()
		if err != nil {
			return "", "", ""
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 && t.Name.Space == nsCaps && t.Name.Local == "c" {
				for _, a := range t.Attr {
					switch a.Name.Local {
					case "node":
						node = a.Value
					case "ver":
						ver = a.Value
					case "hash":
						hash = a.Value
					}
				}
				return node, ver, hash
			}
		case xml.EndElement:
			depth--
		}
	}
}

// learnCaps finds the session's features from the caps in its presence:
// from the cache, or by asking the client's disco#info once per hash (in
// a goroutine: the answer comes through the session's own reader). When
// online is set (the session just became available), the last items it
// is interested in follow once the features are known.
func (m *Module) learnCaps(s *router.Session, p *router.Stanza, online bool) {
	node, ver, hash := capsOf(p)
	st := interestKey.Get(s)
	if ver == "" {
		return
	}
	if old := st.ver.Load(); old != nil && *old == ver && !online {
		return
	}
	st.ver.Store(&ver)
	if f := m.caps.get(ver); f != nil {
		st.features.Store(&f)
		if online {
			m.goLast(s)
		}
		return
	}
	if m.spawn == nil || m.query == nil {
		return
	}
	m.spawn(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		f := m.discoFeatures(ctx, s, node+"#"+ver, ver, hash)
		if f == nil {
			return
		}
		st.features.Store(&f)
		if online {
			m.deliverLast(ctx, s)
		}
	})
}

// discoFeatures asks the session for disco#info of its caps node and
// caches the features when the answer hashes to ver (XEP-0115 §5.4);
// an answer that does not (other hash, extended forms) serves this
// session only.
func (m *Module) discoFeatures(ctx context.Context, s *router.Session, node, ver, hash string) map[string]bool {
	q := wire.NewBuilder(nil).StartNS("query", "http://jabber.org/protocol/disco#info", "node", node).End().Bytes()
	ans, err := m.query(ctx, s.JID(), "get", q)
	if err != nil || ans.Type != "result" {
		return nil
	}
	var res struct {
		Identities []info.Identity `xml:"identity"`
		Features   []struct {
			Var string `xml:"var,attr"`
		} `xml:"feature"`
		Forms []struct{} `xml:"jabber:x:data x"`
	}
	if err := ans.DecodePayload(&res); err != nil {
		return nil
	}
	f := make(map[string]bool, len(res.Features))
	vars := make([]string, 0, len(res.Features))
	for _, v := range res.Features {
		f[v.Var] = true
		vars = append(vars, v.Var)
	}
	if hash == "sha-1" && len(res.Forms) == 0 && disco.CapsVer(res.Identities, vars) == ver {
		m.caps.put(ver, f)
	}
	return f
}

func (m *Module) goLast(s *router.Session) {
	if m.spawn == nil {
		m.deliverLast(s.Context(), s)
		return
	}
	m.spawn(func(ctx context.Context) { m.deliverLast(ctx, s) })
}

// deliverLast sends a session that came online the last item of every
// node it is interested in, of its own account and of the contacts whose
// presence it is subscribed to (XEP-0163 §6.1.2), as far as their access
// models let it read.
func (m *Module) deliverLast(ctx context.Context, s *router.Session) {
	user := s.Bare()
	owners := []jid.JID{user}
	sctx, cancel := m.r.StoreContext(ctx)
	items, _, err := m.rosters.Roster(sctx, user.Localpart())
	cancel()
	if err != nil {
		m.log.Warn("pep: roster for last items", "jid", user.String(), "err", err)
	}
	for _, it := range items {
		if !roster.HasTo(it) {
			continue
		}
		if c, err := jid.Parse(it.Contact); err == nil && c.Domainpart() == m.r.Domain() && c.Localpart() != "" {
			owners = append(owners, c)
		}
	}
	for _, owner := range owners {
		rel, err := m.relation(ctx, owner, user)
		if err != nil {
			continue
		}
		sctx, cancel := m.r.StoreContext(ctx)
		nodes, err := m.store.PEPNodes(sctx, owner.Localpart())
		cancel()
		if err != nil {
			m.log.Warn("pep: nodes for last items", "owner", owner.String(), "err", err)
			continue
		}
		for _, n := range nodes {
			if n.Config.SendLast == pubsub.SendOnSubAndPresence && pubsub.CanRead(n.Config, rel) && wants(s, n.Name) {
				m.sendLast(ctx, owner, n.Name, s.JID())
			}
		}
	}
}

// sendLast sends the newest item of node to one JID.
func (m *Module) sendLast(ctx context.Context, owner jid.JID, node string, to jid.JID) {
	sctx, cancel := m.r.StoreContext(ctx)
	items, err := m.store.PEPItems(sctx, owner.Localpart(), node, nil, 1)
	cancel()
	if err != nil || len(items) == 0 {
		return
	}
	m.send(ctx, owner, to, itemsEvent(node, items[0]))
}

var eventIDs atomic.Uint64

// send writes one notification message from owner's bare JID.
func (m *Module) send(ctx context.Context, owner, to jid.JID, event []byte) {
	st := &router.Stanza{Kind: router.KindMessage, Type: "headline", From: owner, To: to,
		ID: "pep" + strconv.FormatUint(eventIDs.Add(1), 36), Inner: event}
	if to.Resourcepart() != "" && to.Domainpart() == m.r.Domain() {
		m.r.Deliver(to, st)
		return
	}
	m.r.Route(ctx, st)
}

// notify sends event to everyone who gets notifications of node
// (XEP-0163 §4.3): the owner's resources and its presence subscribers'
// available resources that announced +notify interest and may read the
// node, and its explicit subscribers.
func (m *Module) notify(ctx context.Context, owner jid.JID, node string, cfg pubsub.Config, event []byte) {
	m.notifyTo(ctx, owner, node, cfg, m.subscribers(ctx, owner, node), event)
}

// subscribers returns the explicit subscribers of node; a store failure
// is logged (the presence-based notifications still go).
func (m *Module) subscribers(ctx context.Context, owner jid.JID, node string) []jid.JID {
	sctx, cancel := m.r.StoreContext(ctx)
	subs, err := m.store.PEPSubscriptions(sctx, owner.Localpart(), node)
	cancel()
	if err != nil {
		m.log.Warn("pep: subscribers", "owner", owner.String(), "node", node, "err", err)
	}
	var out []jid.JID
	for _, s := range subs {
		if j, err := jid.Parse(s.JID); err == nil {
			out = append(out, j)
		}
	}
	return out
}

// notifyTo is notify with the explicit subscribers given.
func (m *Module) notifyTo(ctx context.Context, owner jid.JID, node string, cfg pubsub.Config, subs []jid.JID, event []byte) {
	sent := map[string]bool{}
	to := func(s *router.Session) {
		if s.Available() && wants(s, node) && !sent[s.String()] {
			sent[s.String()] = true
			m.send(ctx, owner, s.JID(), event)
		}
	}
	for _, s := range m.r.Sessions(owner) {
		to(s)
	}
	if pubsub.CanRead(cfg, pubsub.Subscriber) {
		sctx, cancel := m.r.StoreContext(ctx)
		items, _, err := m.rosters.Roster(sctx, owner.Localpart())
		cancel()
		if err != nil {
			m.log.Warn("pep: roster for notifications", "owner", owner.String(), "err", err)
		}
		for _, it := range items {
			if !roster.HasFrom(it) {
				continue
			}
			c, err := jid.Parse(it.Contact)
			if err != nil || c.Domainpart() != m.r.Domain() {
				continue // remote contacts: see the package doc
			}
			for _, s := range m.r.Sessions(c) {
				to(s)
			}
		}
	}
	for _, j := range subs {
		if !sent[j.String()] {
			sent[j.String()] = true
			m.send(ctx, owner, j, event)
		}
	}
}
