// Package roster serves rosters (RFC 6121 §2) with XEP-0237 versioning:
// the jabber:iq:roster get and set, roster pushes to the interested
// resources, the per-account bound (XMPPD_ROSTER_MAX), and the
// read-modify-write of one item under a per-account lock, which the
// presence module (xmppd/mod/presence) drives for subscriptions. The
// items, the store and the state machine are package dialtone/roster.
//
// The module keeps no roster in memory: every change is a read-modify-write
// of one stored item under a per-account lock, and the lock is never held
// while a stanza is routed, because routing to a local account calls back
// into the modules synchronously.
package roster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"dialtone/roster"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Namespaces served by the module.
const (
	// NS is the roster namespace (RFC 6121 §2).
	NS = "jabber:iq:roster"
	// VerFeature is the namespace of the stream feature
	// <ver xmlns='urn:xmpp:features:rosterver'/> (XEP-0237), offered after
	// authentication.
	VerFeature = "urn:xmpp:features:rosterver"
)

// interested is whether a session requested the roster (RFC 6121 §2.1.6:
// only then does it get pushes).
var interested = router.NewKey[atomic.Bool]()

// Module serves rosters for the local accounts. Make it with New and
// load it on the router. It is safe for concurrent use.
type Module struct {
	store roster.Store
	r     router.Routing
	log   *slog.Logger

	// MaxItems bounds the items stored per account (XMPPD_ROSTER_MAX),
	// those kept only for a pending inbound request included; zero means
	// no limit. Set it before Register.
	MaxItems int

	// accounts serialises read-modify-write of one account's roster items.
	accounts keyedMutex

	idPrefix string
	idSeq    atomic.Uint64
}

// New returns a module that keeps rosters in store and reaches sessions
// through r. A nil log discards log output.
func New(store roster.Store, r router.Routing, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Module{
		store:    store,
		r:        r,
		log:      log.With("module", "roster"),
		accounts: keyedMutex{m: make(map[string]*keyedEntry)},
		idPrefix: "rp" + hex.EncodeToString(b[:]) + "-",
	}
}

// Register registers the roster iq handler for local accounts, and
// advertises jabber:iq:roster on the server and on accounts and the
// roster versioning stream feature.
func (m *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "query"}, m.Handle)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NS)
	ver := wire.NewBuilder(nil).Element("ver", VerFeature, "").Bytes()
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return ver })
	return nil
}

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

// Interested reports whether the session requested the roster (RFC 6121
// §2.1.6), and so gets roster pushes.
func Interested(s *router.Session) bool { return interested.Get(s).Load() }
