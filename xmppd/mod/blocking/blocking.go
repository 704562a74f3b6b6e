// Package blocking is the blocking command (XEP-0191).
package blocking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/blocklist"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// NSErrors is the namespace of the <blocked/> application error
// condition (XEP-0191 §3.3).
const NSErrors = "urn:xmpp:blocking:errors"

// Defaults of the Blocking module's limits.
const (
	DefaultMaxItems   = 1000
	DefaultMaxCached  = 100000
	DefaultIdleExpiry = 10 * time.Minute
)

// Module serves the blocking command (XEP-0191): the blocklist, block and
// unblock requests with their pushes, and a Filter that keeps stanzas from
// blocked JIDs away from the account and stanzas from the account away from
// blocked JIDs.
//
// The filter runs for every routed stanza, so blocklists are cached in
// memory per account: loaded from the store the first time the account is
// seen, changed together with the store, and evicted once the account has
// had no session for IdleExpiry (or at once, for accounts without session,
// when more than MaxCached are cached). Readers take no lock: each cached
// blocklist is an immutable set swapped atomically.
type Module struct {
	r     router.Routing
	store Store

	// MaxItems bounds one account's blocklist; zero means
	// DefaultMaxItems.
	MaxItems int
	// MaxCached bounds the number of cached blocklists (accounts with a
	// session are never evicted); zero means DefaultMaxCached.
	MaxCached int
	// IdleExpiry is how long an unused blocklist of an account without
	// session stays cached; zero means DefaultIdleExpiry.
	IdleExpiry time.Duration
	// PresenceAllowed reports whether contact may see user's presence
	// (RFC 6121: contact has a subscription to user). When set, blocking
	// sends unavailable presence only to such contacts and unblocking sends
	// them the user's current presence (XEP-0191 §3.3, §3.4). When nil,
	// blocking always sends unavailable presence to a blocked account JID
	// and unblocking sends none.
	PresenceAllowed func(ctx context.Context, user, contact jid.JID) bool
	// Changed, when set, is told of each account whose blocklist changed
	// in the store (a cluster tells the other nodes to Forget their copy).
	Changed func(owner jid.JID)

	// Set the options above before Register; they are not read under lock.

	lists   sync.Map // bare JID string → *blockEntry
	count   atomic.Int64
	sweepMu sync.Mutex
	kick    chan struct{}    // asks Run for a sweep when over MaxCached
	now     func() time.Time // for tests
}

// blockEntry is one account's cached blocklist.
type blockEntry struct {
	owner jid.JID
	ready chan struct{} // closed once set (or err) is known
	err   error         // load error, written before ready is closed
	set   atomic.Pointer[blockSet]
	used  atomic.Int64 // unix nanos of last use

	mu         sync.Mutex // serialises changes of set and interested
	evicted    bool       // removed from the cache; changes must start over
	interested map[string]struct{}
}

// blockSet is an immutable blocklist.
type blockSet struct {
	jids map[string]struct{}
	list []string // sorted
}

var emptyBlockSet = &blockSet{}

func newBlockSet(jids []string) *blockSet {
	if len(jids) == 0 {
		return emptyBlockSet
	}
	s := &blockSet{jids: make(map[string]struct{}, len(jids))}
	for _, j := range jids {
		s.jids[j] = struct{}{}
	}
	s.list = make([]string, 0, len(s.jids))
	for j := range s.jids {
		s.list = append(s.list, j)
	}
	sort.Strings(s.list)
	return s
}

func (s *blockSet) has(j string) bool {
	_, ok := s.jids[j]
	return ok
}

// blocks reports whether j matches an entry, in the order of XEP-0191 §6
// (XEP-0016): full JID, bare JID, domain/resource, then the domain and
// every parent domain of it.
func (s *blockSet) blocks(j jid.JID) bool {
	if len(s.jids) == 0 {
		return false
	}
	local, domain, res := j.Localpart(), j.Domainpart(), j.Resourcepart()
	if local != "" {
		if s.has(j.String()) {
			return true
		}
		if res != "" && s.has(local+"@"+domain) {
			return true
		}
	}
	if res != "" && s.has(domain+"/"+res) {
		return true
	}
	for d := domain; d != ""; {
		if s.has(d) {
			return true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return false
}

// New returns the blocking module.
func New(r router.Routing, store Store) *Module {
	return &Module{r: r, store: store, now: time.Now, kick: make(chan struct{}, 1)}
}

// FilterPriority is the priority of the blocking hooks: before any other
// module sees (and copies, or stores) a stanza the blocklist stops.
const FilterPriority = 100

// Register adds the blocklist, block and unblock handlers for accounts,
// advertises urn:xmpp:blocking on the server (XEP-0191 §3.1) and on
// accounts, hooks the filter on what local sessions send and on what is
// addressed to local accounts, and runs the cache's sweeper.
func (b *Module) Register(h *router.Hooks) error {
	both := router.IQGet | router.IQSet
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: blocklist.NS, Local: "blocklist"}, b.getIQ)
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: blocklist.NS, Local: "block"}, b.blockIQ)
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: blocklist.NS, Local: "unblock"}, b.unblockIQ)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, blocklist.NS)
	h.Hook(router.PreRoute, router.AllKinds, FilterPriority, func(ctx context.Context, ev *router.Event) error {
		return filterResult(b.Filter(ctx, ev.Stanza, false))
	})
	h.Hook(router.Inbound, router.AllKinds, FilterPriority, func(ctx context.Context, ev *router.Event) error {
		return filterResult(b.Filter(ctx, ev.Stanza, true))
	})
	h.Go(b.Run)
	return nil
}

// filterResult is what a hook returns for the filter's verdict.
func filterResult(drop bool, err error) error {
	switch {
	case err != nil:
		return err
	case drop:
		return router.ErrHandled
	}
	return nil
}

func (b *Module) maxItems() int {
	if b.MaxItems > 0 {
		return b.MaxItems
	}
	return DefaultMaxItems
}

func (b *Module) maxCached() int64 {
	if b.MaxCached > 0 {
		return int64(b.MaxCached)
	}
	return DefaultMaxCached
}

func (b *Module) idleExpiry() time.Duration {
	if b.IdleExpiry > 0 {
		return b.IdleExpiry
	}
	return DefaultIdleExpiry
}

func (b *Module) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// entry returns the loaded cache entry of the account bare, loading it from
// the store when it is not cached. Concurrent callers share one load.
func (b *Module) entry(ctx context.Context, bare jid.JID) (*blockEntry, error) {
	key := b.key(bare)
	for {
		if v, ok := b.lists.Load(key); ok {
			e := v.(*blockEntry)
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if e.err != nil {
				// Failed loads are not cached: the next caller tries again.
				b.remove(key, e)
				return nil, e.err
			}
			e.touch(b.clock())
			return e, nil
		}
		e := &blockEntry{owner: bare, ready: make(chan struct{})}
		if _, loaded := b.lists.LoadOrStore(key, e); loaded {
			continue
		}
		n := b.count.Add(1)
		sctx, cancel := b.r.StoreContext(ctx)
		list, err := b.store.BlockList(sctx, bare.Localpart())
		cancel()
		if err != nil {
			e.err = fmt.Errorf("load blocklist of %s: %w", bare, err)
			close(e.ready)
			b.remove(key, e)
			return nil, e.err
		}
		e.set.Store(newBlockSet(list))
		e.touch(b.clock())
		close(e.ready)
		if n > b.maxCached() {
			// Not here: the filter may run under the router's locks, and
			// a sweep asks the router for sessions.
			select {
			case b.kick <- struct{}{}:
			default:
			}
		}
		return e, nil
	}
}

// key is the cache key of the account bare: its localpart when it is an
// account here, which costs nothing (the filter runs for every stanza,
// and the bare JID's string is built anew each time), else the bare JID
// (never the same: a localpart holds no '@').
func (b *Module) key(bare jid.JID) string {
	if l := bare.Localpart(); l != "" && bare.Domainpart() == b.r.Domain() {
		return l
	}
	return bare.String()
}

func (e *blockEntry) touch(now time.Time) {
	// Avoid writing the shared word on every stanza: a second is precise
	// enough for idle expiry.
	t := now.UnixNano()
	if t-e.used.Load() > int64(time.Second) {
		e.used.Store(t)
	}
}

func (b *Module) remove(key string, e *blockEntry) {
	if b.lists.CompareAndDelete(key, e) {
		b.count.Add(-1)
	}
}

// lockEntry returns the account's entry locked for a change.
func (b *Module) lockEntry(ctx context.Context, bare jid.JID) (*blockEntry, error) {
	for {
		e, err := b.entry(ctx, bare)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if !e.evicted {
			return e, nil
		}
		e.mu.Unlock()
	}
}

// Sweep evicts the cached blocklists of accounts that have no session and
// were not used for IdleExpiry. Run calls it periodically.
func (b *Module) Sweep() { b.sweep(false) }

// sweep evicts idle entries of accounts without session; with force, those
// unused for a second (MaxCached was exceeded).
func (b *Module) sweep(force bool) {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	idle := b.idleExpiry()
	if force {
		idle = time.Second
	}
	cutoff := b.clock().Add(-idle).UnixNano()
	b.lists.Range(func(k, v any) bool {
		e := v.(*blockEntry)
		select {
		case <-e.ready:
		default:
			return true // still loading
		}
		if e.used.Load() > cutoff {
			return true
		}
		if len(b.r.Sessions(e.owner)) > 0 {
			return true
		}
		e.mu.Lock()
		e.evicted = true
		b.remove(k.(string), e)
		e.mu.Unlock()
		return true
	})
}

// Forget drops the cached blocklist of the account bare, e.g. after the
// account was deleted.
func (b *Module) Forget(bare jid.JID) {
	key := b.key(bare.Bare())
	if v, ok := b.lists.Load(key); ok {
		e := v.(*blockEntry)
		<-e.ready
		e.mu.Lock()
		e.evicted = true
		b.remove(key, e)
		e.mu.Unlock()
	}
}

// Run sweeps the cache every half IdleExpiry, and when more than MaxCached
// blocklists are cached, until ctx is done. Without it the cache is not
// bounded: start it with the server.
func (b *Module) Run(ctx context.Context) {
	t := time.NewTicker(b.idleExpiry() / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.sweep(false)
		case <-b.kick:
			b.sweep(true)
		}
	}
}

// Blocked reports whether the account bare blocks j.
func (b *Module) Blocked(ctx context.Context, bare, j jid.JID) (bool, error) {
	e, err := b.entry(ctx, bare.Bare())
	if err != nil {
		return false, err
	}
	return e.set.Load().blocks(j), nil
}

// Filter is the blocklists' verdict on a stanza (XEP-0191 §3.3): drop it,
// and with err answer its sender. Inbound from a
// blocked JID: presence and iq results/errors are dropped silently, iq
// get/set and messages are answered with service-unavailable. Outbound to a
// blocked JID: presence and errors are dropped, anything else is answered
// with not-acceptable and <blocked xmlns='urn:xmpp:blocking:errors'/>.
//
// A stanza from one local account to another is also checked, on its way
// in, against the sender's blocklist: what the server sends on an
// account's behalf (its broadcast presence fanned out to each contact,
// answers to probes) never passed the outbound check with its final
// address.
func (b *Module) Filter(ctx context.Context, s *router.Stanza, inbound bool) (bool, error) {
	if !inbound {
		return b.filter(ctx, s, s.From.Bare(), s.To, false)
	}
	if from := s.From.Bare(); from.Localpart() != "" && from.Domainpart() == b.r.Domain() && !from.Equal(s.To.Bare()) {
		if drop, err := b.filter(ctx, s, from, s.To, false); drop || err != nil {
			return drop, err
		}
	}
	return b.filter(ctx, s, s.To.Bare(), s.From, true)
}

// filter applies owner's blocklist to a stanza exchanged with peer.
func (b *Module) filter(ctx context.Context, s *router.Stanza, owner, peer jid.JID, inbound bool) (bool, error) {
	// Cheap checks first: this runs for every stanza.
	if peer.Equal(jid.JID{}) || owner.Equal(owner.Domain()) {
		return false, nil
	}
	e, err := b.entry(ctx, owner)
	if err != nil {
		// Fail closed: without the blocklist we cannot know.
		if silent(s) {
			return true, nil
		}
		return true, router.NewError(stanza.Wait, stanza.InternalServerError, "")
	}
	set := e.set.Load()
	if len(set.jids) == 0 || peer.Bare().Equal(owner) {
		return false, nil
	}
	if !inbound && peer.Equal(peer.Domain()) && peer.Domainpart() == b.r.Domain() {
		// The account's own server stays reachable whatever is blocked.
		return false, nil
	}
	if !set.blocks(peer) {
		return false, nil
	}
	if silent(s) {
		return true, nil
	}
	if inbound {
		return true, router.NewError(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	// The error carries an application condition, which a returned
	// stanza.Error cannot: send it ourselves.
	b.r.Deliver(s.From, s.Reply("error", blockedError))
	return true, nil
}

// silent reports whether a stanza must be dropped without an answer:
// presence, errors and iq results.
func silent(s *router.Stanza) bool {
	return s.Kind == router.KindPresence || s.Type == "error" || s.Kind == router.KindIQ && s.Type != "get" && s.Type != "set"
}

// blockedError is the error of XEP-0191 §3.3: not-acceptable with the
// <blocked/> application condition.
var blockedError = wire.NewBuilder(nil).Start("error", "type", "cancel").
	Element("not-acceptable", router.NSStanzas, "").Element("blocked", NSErrors, "").Bytes()

func (b *Module) getIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	e, err := b.lockEntry(ctx, iq.To)
	if err != nil {
		return nil, err
	}
	if e.interested == nil {
		e.interested = make(map[string]struct{})
	}
	e.interested[iq.From.String()] = struct{}{}
	set := e.set.Load()
	e.mu.Unlock()
	return appendItems(nil, "blocklist", set.list), nil
}

// appendItems appends <local xmlns='urn:xmpp:blocking'><item jid=…/>…</local>.
func appendItems(buf []byte, local string, jids []string) []byte {
	b := wire.NewBuilder(buf)
	b.StartNS(local, blocklist.NS)
	for _, j := range jids {
		b.Start("item", "jid", j).End()
	}
	return b.End().Bytes()
}

// items reads and normalises the <item jid=…/> children of a block or
// unblock request, without duplicates.
func (b *Module) items(iq *router.Stanza) ([]jid.JID, error) {
	r, _, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	var out []jid.JID
	seen := make(map[string]bool)
	for {
		start, ok, err := payload.NextChild(r)
		if err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		if !ok {
			return out, nil
		}
		if err := payload.Skip(r); err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		if start.Name != (xml.Name{Space: blocklist.NS, Local: "item"}) {
			continue
		}
		v, ok := payload.Attr(start, "jid")
		if !ok {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		j, err := jid.Parse(v)
		if err != nil {
			return nil, router.NewError(stanza.Modify, stanza.JIDMalformed, "")
		}
		if j, err = b.r.Normalize(j); err != nil {
			return nil, err
		}
		if s := j.String(); !seen[s] {
			seen[s] = true
			out = append(out, j)
		}
		if len(out) > b.maxItems() {
			return nil, errTooManyBlocked
		}
	}
}

var errTooManyBlocked = router.NewError(stanza.Modify, stanza.PolicyViolation, "too many blocked addresses")

func strs(js []jid.JID) []string {
	s := make([]string, len(js))
	for i, j := range js {
		s[i] = j.String()
	}
	return s
}

func (b *Module) blockIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	if iq.Type != "set" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	items, err := b.items(iq)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "") // XEP-0191 §3.3
	}
	owner := iq.To
	e, err := b.lockEntry(ctx, owner)
	if err != nil {
		return nil, err
	}
	cur := e.set.Load()
	var added []jid.JID
	for _, j := range items {
		if !cur.has(j.String()) {
			added = append(added, j)
		}
	}
	if len(cur.list)+len(added) > b.maxItems() {
		e.mu.Unlock()
		return nil, errTooManyBlocked
	}
	sctx, cancel := b.r.StoreContext(ctx)
	defer cancel()
	if err := b.store.Block(sctx, owner.Localpart(), strs(items)); err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("block for %s: %w", owner, err)
	}
	// Unavailable presence goes out before the block takes effect, so that
	// the outbound filter does not stop it (XEP-0191 §3.3).
	b.sendUnavailable(ctx, owner, added)
	if len(added) > 0 {
		e.set.Store(newBlockSet(append(append([]string(nil), cur.list...), strs(added)...)))
	}
	targets := b.pushTargets(e)
	e.mu.Unlock()
	b.changed(owner)
	b.push(owner, targets, appendItems(nil, "block", strs(items)))
	return nil, nil
}

func (b *Module) unblockIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	if iq.Type != "set" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	items, err := b.items(iq)
	if err != nil {
		return nil, err
	}
	owner := iq.To
	e, err := b.lockEntry(ctx, owner)
	if err != nil {
		return nil, err
	}
	cur := e.set.Load()
	sctx, cancel := b.r.StoreContext(ctx)
	defer cancel()
	if err := b.store.Unblock(sctx, owner.Localpart(), strs(items)); err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("unblock for %s: %w", owner, err)
	}
	var removed []string
	next := emptyBlockSet
	if len(items) == 0 {
		removed = cur.list
	} else {
		drop := make(map[string]bool, len(items))
		for _, j := range items {
			drop[j.String()] = true
		}
		var keep []string
		for _, j := range cur.list {
			if drop[j] {
				removed = append(removed, j)
			} else {
				keep = append(keep, j)
			}
		}
		next = newBlockSet(keep)
	}
	e.set.Store(next)
	targets := b.pushTargets(e)
	e.mu.Unlock()
	b.changed(owner)
	b.sendPresence(ctx, owner, removed)
	b.push(owner, targets, appendItems(nil, "unblock", strs(items)))
	return nil, nil
}

func (b *Module) changed(owner jid.JID) {
	if b.Changed != nil {
		b.Changed(owner)
	}
}

// sendUnavailable sends unavailable presence from each available resource
// of owner to each newly blocked account JID allowed to see it.
func (b *Module) sendUnavailable(ctx context.Context, owner jid.JID, blocked []jid.JID) {
	if len(blocked) == 0 {
		return
	}
	sessions := b.r.Sessions(owner)
	for _, to := range blocked {
		if to.Localpart() == "" || to.Bare().Equal(owner) {
			continue // a domain is no presence recipient; nor is oneself
		}
		if b.PresenceAllowed != nil && !b.PresenceAllowed(ctx, owner, to.Bare()) {
			continue
		}
		for _, s := range sessions {
			if !s.Available() {
				continue
			}
			b.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, From: s.JID(), To: to, Type: "unavailable"})
		}
	}
}

// sendPresence sends the current presence of each available resource of
// owner to each unblocked account JID allowed to see it (XEP-0191 §3.4).
// Without PresenceAllowed nothing is sent: presence must not leak to
// contacts without a subscription.
func (b *Module) sendPresence(ctx context.Context, owner jid.JID, unblocked []string) {
	if b.PresenceAllowed == nil || len(unblocked) == 0 {
		return
	}
	sessions := b.r.Sessions(owner)
	for _, v := range unblocked {
		to, err := jid.Parse(v)
		if err != nil || to.Localpart() == "" || !b.PresenceAllowed(ctx, owner, to.Bare()) {
			continue
		}
		for _, s := range sessions {
			if !s.Available() {
				continue
			}
			p := s.Presence().Clone()
			p.From, p.To, p.ToAbsent = s.JID(), to, false
			b.r.Route(ctx, p)
		}
	}
}

// pushTargets returns the sessions of e's account that asked for the
// blocklist and still exist, forgetting the others. e.mu must be held.
func (b *Module) pushTargets(e *blockEntry) []jid.JID {
	if len(e.interested) == 0 {
		return nil
	}
	live := make(map[string]jid.JID)
	for _, s := range b.r.Sessions(e.owner) {
		live[s.JID().String()] = s.JID()
	}
	var out []jid.JID
	for full := range e.interested {
		if j, ok := live[full]; ok {
			out = append(out, j)
		} else {
			delete(e.interested, full)
		}
	}
	return out
}

// push sends an iq set with payload to each target (XEP-0191 §3.3–3.5).
func (b *Module) push(owner jid.JID, targets []jid.JID, payload []byte) {
	for _, to := range targets {
		b.r.Deliver(to, &router.Stanza{
			Kind:  router.KindIQ,
			From:  owner,
			To:    to,
			ID:    pushID(),
			Type:  "set",
			Inner: payload,
		})
	}
}

func pushID() string {
	var p [8]byte
	_, _ = rand.Read(p[:])
	return "block-" + hex.EncodeToString(p[:])
}

// Store keeps each account's blocklist as JID strings in the form the
// server normalised them to. Implemented by package storage; owner is the
// account's canonical number.
type Store interface {
	// BlockList returns the blocked JIDs of owner, in any order; an empty
	// list (not an error) when there are none.
	BlockList(ctx context.Context, owner string) ([]string, error)
	// Block adds the JIDs (existing ones are kept once).
	Block(ctx context.Context, owner string, jids []string) error
	// Unblock removes the JIDs; an empty list removes all.
	Unblock(ctx context.Context, owner string, jids []string) error
}
