// Package im is the instant-messaging core of RFC 6121: roster management
// (jabber:iq:roster with XEP-0237 versioning), presence broadcast, probes,
// directed presence and the subscription state machine of RFC 6121 §3 and
// Appendix A, the way Prosody's mod_roster and mod_presence do it.
//
// The module keeps no roster in memory: every change is a read-modify-write
// of one stored item under a per-account lock, and the lock is never held
// while a stanza is routed, because routing to a local account calls back
// into this module synchronously.
package im

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
)

// Namespaces and stream features served by the module.
const (
	// NSRoster is the roster namespace (RFC 6121 §2).
	NSRoster = "jabber:iq:roster"
	// RosterVerFeature is the namespace of the stream feature
	// <ver xmlns='urn:xmpp:features:rosterver'/> (XEP-0237) that the core
	// advertises after resource binding.
	RosterVerFeature = "urn:xmpp:features:rosterver"
	// PreApprovalFeature is the namespace of the stream feature
	// <sub xmlns='urn:xmpp:features:pre-approval'/> (RFC 6121 §3.4) that
	// the core may advertise: the module supports subscription pre-approval.
	PreApprovalFeature = "urn:xmpp:features:pre-approval"
)

// Presence types (RFC 6121 §4.7.1); "" is available.
const (
	typeAvailable    = ""
	typeUnavailable  = "unavailable"
	typeSubscribe    = "subscribe"
	typeSubscribed   = "subscribed"
	typeUnsubscribe  = "unsubscribe"
	typeUnsubscribed = "unsubscribed"
	typeProbe        = "probe"
	typeError        = "error"
)

// Module serves rosters and presence for the local accounts. Make it with
// New and attach it to a Mux with Register. It is safe for concurrent use.
type Module struct {
	store Store
	r     router.Routing
	log   *slog.Logger

	// MaxItems bounds the items stored per account (XMPPD_ROSTER_MAX),
	// those kept only for a pending inbound request included; zero means
	// no limit. Set it before Register.
	MaxItems int
	// Blocked, when set, reports whether user blocks contact (XEP-0191);
	// subscription requests stored before the block are then not
	// delivered. Set it before Register.
	Blocked func(ctx context.Context, user, contact jid.JID) (bool, error)

	// accounts serialises read-modify-write of one account's roster items.
	accounts keyedMutex

	idPrefix string
	idSeq    atomic.Uint64
}

// Per-session state: whether the session requested the roster (RFC 6121
// §2.1.6: only then does it get pushes), and the addresses it sent
// directed available presence to (RFC 6121 §4.6).
var (
	interested = router.NewKey[atomic.Bool]()
	directed   = router.NewKey[directedSet]()
)

// New returns a module that keeps rosters in store and reaches sessions
// through r. A nil log discards log output.
func New(store Store, r router.Routing, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Module{
		store:    store,
		r:        r,
		log:      log.With("module", "im"),
		accounts: keyedMutex{m: make(map[string]*keyedEntry)},
		idPrefix: "rp" + hex.EncodeToString(b[:]) + "-",
	}
}

// Register registers the roster iq handler for local accounts, advertises
// jabber:iq:roster on the server and on accounts and the roster versioning
// and pre-approval stream features, and handles presence: what local
// sessions send, what comes to local accounts, probes, and the end of a
// session.
func (m *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NSRoster, Local: "query"}, m.handleRoster)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NSRoster)
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return rosterVerElement })
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return preApprovalElement })
	h.Hook(router.PresenceOut, router.Presences, 0, func(ctx context.Context, ev *router.Event) error {
		m.OutboundPresence(ctx, ev.Origin, ev.Stanza)
		return router.ErrHandled
	})
	inbound := func(ctx context.Context, ev *router.Event) error {
		m.InboundPresence(ctx, ev.Stanza)
		return router.ErrHandled
	}
	h.Hook(router.PresenceIn, router.Presences, 0, inbound)
	h.Hook(router.Probe, router.Presences, 0, inbound)
	h.OnSession(router.Closed, 0, m.SessionClosed)
	return nil
}

// The stream features of roster versioning (XEP-0237) and subscription
// pre-approval (RFC 6121 §3.4).
var (
	rosterVerElement   = wire.NewBuilder(nil).Element("ver", RosterVerFeature, "").Bytes()
	preApprovalElement = wire.NewBuilder(nil).Element("sub", PreApprovalFeature, "").Bytes()
)

// storeCtx bounds a store call (XMPPD_STORE_TIMEOUT).
func (m *Module) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return m.r.StoreContext(ctx)
}

// nextID returns an id for a stanza the server originates (roster pushes).
func (m *Module) nextID() string {
	return m.idPrefix + strconv.FormatUint(m.idSeq.Add(1), 10)
}

// keyedMutex is a set of mutexes made on demand, one per key, removed when
// nobody holds or waits for them. The map lock is held only to find the
// entry, never across the critical section.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu  sync.Mutex
	ref int
}

// lock locks key and returns the function that unlocks it.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.ref++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.ref--
		if e.ref == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// directedSet is the per-session list of directed presence recipients.
type directedSet struct {
	mu     sync.Mutex
	to     map[string]jid.JID
	closed bool // the session ended: nothing more is added
}

// addDirected remembers that the session sent available presence to to.
func addDirected(sess *router.Session, to jid.JID) {
	d := directed.Get(sess)
	d.mu.Lock()
	if !d.closed {
		if d.to == nil {
			d.to = make(map[string]jid.JID)
		}
		d.to[to.String()] = to
	}
	d.mu.Unlock()
}

// removeDirected forgets to after the session sent it unavailable presence.
func removeDirected(sess *router.Session, to jid.JID) {
	d := directed.Get(sess)
	d.mu.Lock()
	delete(d.to, to.String())
	d.mu.Unlock()
}

// takeDirected returns and forgets the session's directed recipients.
func takeDirected(sess *router.Session) []jid.JID {
	d := directed.Get(sess)
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]jid.JID, 0, len(d.to))
	for _, j := range d.to {
		out = append(out, j)
	}
	d.to, d.closed = nil, true
	return out
}
