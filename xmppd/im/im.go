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
	"time"

	"dialtone/xmppd"

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

// storeTimeout bounds every store call made on behalf of one stanza.
const storeTimeout = 5 * time.Second

// Module serves rosters and presence for the local accounts. Make it with
// New and attach it to a Mux with Register. It is safe for concurrent use.
type Module struct {
	store Store
	r     xmppd.Router
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
	// directed maps a session's full JID (string) to the *directedSet of
	// addresses it sent directed available presence to (RFC 6121 §4.6).
	directed sync.Map

	idPrefix string
	idSeq    atomic.Uint64
}

var _ xmppd.PresenceHandler = (*Module)(nil)

// New returns a module that keeps rosters in store and reaches sessions
// through r. A nil log discards log output.
func New(store Store, r xmppd.Router, log *slog.Logger) *Module {
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
// jabber:iq:roster on the server and on accounts, and makes the module the
// presence handler.
func (m *Module) Register(mux *xmppd.Mux) {
	mux.HandleIQ(xmppd.ScopeAccount, xml.Name{Space: NSRoster, Local: "query"}, m.handleRoster)
	mux.AddFeature(xmppd.ScopeServer, NSRoster)
	mux.HandlePresence(m)
}

// storeCtx bounds a store call.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout)
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
	mu sync.Mutex
	to map[string]jid.JID
}

// addDirected remembers that the session full sent available presence to to.
func (m *Module) addDirected(full, to jid.JID) {
	v, _ := m.directed.LoadOrStore(full.String(), &directedSet{to: make(map[string]jid.JID)})
	d := v.(*directedSet)
	d.mu.Lock()
	// A set that was taken by takeDirected (session closing) is nil: drop.
	if d.to != nil {
		d.to[to.String()] = to
	}
	d.mu.Unlock()
}

// removeDirected forgets to after the session sent it unavailable presence.
func (m *Module) removeDirected(full, to jid.JID) {
	v, ok := m.directed.Load(full.String())
	if !ok {
		return
	}
	d := v.(*directedSet)
	d.mu.Lock()
	delete(d.to, to.String())
	d.mu.Unlock()
}

// takeDirected returns and forgets the session's directed recipients.
func (m *Module) takeDirected(full jid.JID) []jid.JID {
	v, ok := m.directed.LoadAndDelete(full.String())
	if !ok {
		return nil
	}
	d := v.(*directedSet)
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]jid.JID, 0, len(d.to))
	for _, j := range d.to {
		out = append(out, j)
	}
	d.to = nil
	return out
}
