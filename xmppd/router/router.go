// Package router routes stanzas between the local sessions, the server's
// modules and other servers (RFC 6121 §8), and is the module API: modules
// register IQ handlers, stanza hooks, session events, stream features and
// disco entries on its Hooks. It knows no XEP: carbons, offline storage,
// blocking and the rest are modules.
//
// The data path: a client stream (package c2s) hands each stanza it reads
// to FromSession; another server's (package s2s) to RouteInbound. Route
// delivers by the rules of RFC 6121 §8 to local sessions (through their
// Sink), to IQ handlers, to the hooks, or to the remote route (s2s).
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
)

// Defaults of Config.
const (
	DefaultStoreTimeout = 5 * time.Second
	DefaultIQTimeout    = 10 * time.Second
)

// Config configures a Router.
type Config struct {
	// Domain is the served domain.
	Domain string
	// Parser reads the localparts of local JIDs (phone numbers).
	Parser *auth.NumberParser
	// Accounts says which numbers have an account (IsLocal).
	Accounts interface {
		Account(ctx context.Context, n auth.Number) (auth.Account, error)
	}
	// SessionsPerAccount bounds the bound resources of one account; 0: no
	// limit.
	SessionsPerAccount int
	// StoreTimeout bounds every store call made for a stanza
	// (XMPPD_STORE_TIMEOUT, see StoreContext); 0: DefaultStoreTimeout.
	StoreTimeout time.Duration
	// IQTimeout bounds an IQ handler; 0: DefaultIQTimeout.
	IQTimeout time.Duration
	// Log takes the router's errors; nil discards them.
	Log *slog.Logger
	// Routed, when set, counts each stanza routed, by kind.
	Routed func(Kind)
}

// RemoteHandler takes every stanza addressed to another domain (s2s). It
// must not block on the network: queue, and answer errors to the sender
// later through Bounce.
type RemoteHandler func(ctx context.Context, st *Stanza)

// Routing is what modules use of the router: the routing, the session
// table, the address rules. *Router implements it; module tests fake it.
type Routing interface {
	// Domain is the local XMPP domain.
	Domain() string
	// Route delivers st by the rules of RFC 6121 §8; st.From must be set.
	// Errors are sent back to st.From as stanzas, never returned.
	Route(ctx context.Context, st *Stanza)
	// Deliver writes st to exactly one local session; false when it is
	// gone. No hooks run.
	Deliver(full jid.JID, st *Stanza) bool
	// Sessions returns the bound sessions of the local account bare (do
	// not modify the slice).
	Sessions(bare jid.JID) []*Session
	// Session returns the bound session full, or nil.
	Session(full jid.JID) *Session
	// SetPresence records the presence a session broadcast: an available
	// presence (priority read from it), or nil for unavailable.
	SetPresence(ctx context.Context, sess *Session, p *Stanza)
	// IsLocal reports whether the bare JID is a stored account here.
	IsLocal(ctx context.Context, bare jid.JID) (bool, error)
	// Normalize returns the canonical form of j: for the local domain the
	// localpart is parsed as a phone number in any accepted form; other
	// domains are returned unchanged. An error is a stanza.Error
	// (item-not-found for a localpart that is not a valid number,
	// jid-malformed).
	Normalize(j jid.JID) (jid.JID, error)
	// StoreContext bounds a store call made for a stanza (see Router).
	StoreContext(ctx context.Context) (context.Context, context.CancelFunc)
}

// Router is the router of one domain and the registry of its modules.
type Router struct {
	cfg       Config
	domain    jid.JID
	domainStr string
	log       *slog.Logger
	shards    [numShards]shard
	hooks     Hooks
	remote    RemoteHandler
	queries   sync.Map // *Session → *sessionQueries, while one waits (query.go)
	events    sync.Pool

	mu      sync.Mutex
	serving bool
	closed  bool
	ctx     context.Context // of the modules' goroutines (Go)
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var _ Routing = (*Router)(nil)

// New makes a Router.
func New(cfg Config) (*Router, error) {
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("router: invalid domain %q", cfg.Domain)
	}
	if cfg.Parser == nil || cfg.Accounts == nil {
		return nil, errors.New("router: Parser and Accounts are required")
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.IQTimeout <= 0 {
		cfg.IQTimeout = DefaultIQTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Router{cfg: cfg, domain: d, domainStr: d.Domainpart(), log: cfg.Log}
	r.hooks.r = r
	for i := range r.shards {
		r.shards[i].accounts = make(map[string][]*Session)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.events.New = func() any { return new(Event) }
	return r, nil
}

// Load registers modules, in order, and makes their hooks ready. It
// returns every registration error (a namespace with two handlers, say):
// a server with such an error must not start. Call it before serving.
func (r *Router) Load(mods ...Module) error {
	r.mu.Lock()
	serving := r.serving
	r.mu.Unlock()
	if serving {
		return errors.New("router: modules are loaded before the server serves")
	}
	for _, m := range mods {
		if err := m.Register(&r.hooks); err != nil {
			r.hooks.errs = append(r.hooks.errs, fmt.Errorf("%T: %w", m, err))
		}
	}
	r.hooks.sort()
	err := errors.Join(r.hooks.errs...)
	r.hooks.errs = nil
	return err
}

// Hooks is the registry of the loaded modules (stream features, nonzas and
// disco entries are read from it).
func (r *Router) Hooks() *Hooks { return &r.hooks }

// Serving marks the start of serving: modules can no longer be loaded.
func (r *Router) Serving() {
	r.mu.Lock()
	r.serving = true
	r.mu.Unlock()
}

// SetRemote sets the route of stanzas to other domains (federation).
// Without one they are answered remote-server-not-found.
func (r *Router) SetRemote(h RemoteHandler) { r.remote = h }

// Domain is the served domain.
func (r *Router) Domain() string { return r.domainStr }

// DomainJID is the served domain as a JID.
func (r *Router) DomainJID() jid.JID { return r.domain }

// StoreContext bounds a store call made for a stanza: every module runs
// its store calls under it, so that a database that hangs costs the sender
// an internal-server-error after XMPPD_STORE_TIMEOUT and never blocks
// other users. Never hold a lock other sessions need across such a call.
func (r *Router) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.StoreTimeout)
}

// Go runs f in a goroutine the router owns (see Hooks.Go); false, and f
// not run, once the router is closed.
func (r *Router) Go(f func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.recoverHook("background work")
		f(r.ctx)
	}()
	return true
}

// Close stops the modules' goroutines and waits for them, or for ctx.
// Call it after the sessions ended.
func (r *Router) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Authenticated fires the Authenticated event for a session that was
// just made.
func (r *Router) Authenticated(sess *Session) {
	r.fire(sess.ctx, Authenticated, sess)
}

// ErrTooManyResources is Bind's error when the account has
// SessionsPerAccount other resources bound.
var ErrTooManyResources = errors.New("router: too many resources bound for this account")

// Bind gives sess its full JID and puts it in the table, where an older
// session with the same resource is closed with conflict. Then confirm,
// if not nil, may still refuse it (a password changed since the session
// authenticated: a change closes the sessions in the table, so the check
// must come after the session is in it); then the Bound event fires. On
// error sess is not bound.
func (r *Router) Bind(sess *Session, full jid.JID, confirm func() error) error {
	sess.bind(full)
	if !r.register(sess) {
		return ErrTooManyResources
	}
	if confirm != nil {
		if err := confirm(); err != nil {
			r.unregister(sess)
			return err
		}
	}
	r.fire(sess.ctx, Bound, sess)
	return nil
}

// Unregister takes sess out of the table, at once, so that nothing more
// is routed to a stream that is going away (messages fall back to other
// resources or the Undelivered hooks), and cancels its context.
func (r *Router) Unregister(sess *Session) {
	r.unregister(sess)
	sess.ctx.cancel(context.Canceled)
}

// Closed ends a session whose stream ended: out of the table, its
// Unavailable (if it was available) and Closed events, its presence
// forgotten.
func (r *Router) Closed(sess *Session) {
	r.Unregister(sess)
	// The session's own context is over: what its end causes (unavailable
	// presence to its contacts) still has to happen.
	ctx := context.WithoutCancel(sess.ctx)
	if sess.Available() {
		r.fire(ctx, Unavailable, sess)
	}
	r.fire(ctx, Closed, sess)
	sess.presence.Store(nil)
}

// StreamEnded is called by a client stream whose session sess was
// bound when the stream ended (dropped: see StreamEndHandler). True when
// a module keeps the session: the stream then leaves it as it is; false
// when the caller must end it (Closed).
func (r *Router) StreamEnded(sess *Session, stream Sink, dropped bool) bool {
	if !sess.Kept() || r.hooks.ended == nil {
		return false
	}
	ctx := context.WithoutCancel(sess.ctx)
	kept := false
	func() {
		defer r.recoverHook("end of a stream")
		kept = r.hooks.ended(ctx, sess, stream, dropped)
	}()
	return kept
}

// Fire runs the hooks of Hibernated or Resumed for sess, on behalf of the
// module that keeps sessions across streams; the other events are the
// router's own, and Fire ignores them.
func (r *Router) Fire(ctx context.Context, e SessionEvent, sess *Session) {
	if e == Hibernated || e == Resumed {
		r.fire(ctx, e, sess)
	}
}

// Undeliverable hands a message that was sent to a session which never
// took it (a XEP-0198 session that ended with stanzas unacknowledged) to
// the Undelivered hooks, as routing does with a message no session takes.
func (r *Router) Undeliverable(ctx context.Context, st *Stanza) {
	if st.Kind == KindMessage {
		r.undelivered(ctx, st, nil)
	}
}

// fire runs the hooks of a session event.
func (r *Router) fire(ctx context.Context, e SessionEvent, sess *Session) {
	for _, h := range r.hooks.sessions[e] {
		func() {
			defer r.recoverHook("session event")
			h.fn(ctx, sess)
		}()
	}
}

// Deliver implements Routing.
func (r *Router) Deliver(full jid.JID, st *Stanza) bool {
	sess := r.Session(full)
	return sess != nil && sess.Send(st.Bytes())
}

// SetPresence implements Routing. It fires Available when the session
// becomes available with a non-negative priority, Unavailable when an
// available session goes unavailable.
func (r *Router) SetPresence(ctx context.Context, sess *Session, p *Stanza) {
	switch available, unavailable := sess.SetPresence(p); {
	case available:
		r.fire(ctx, Available, sess)
	case unavailable:
		r.fire(ctx, Unavailable, sess)
	}
	r.fire(ctx, PresenceSet, sess)
}

func presencePriority(p *Stanza) int {
	i := strings.Index(string(p.Inner), "<priority>")
	if i < 0 {
		return 0
	}
	rest := string(p.Inner[i+len("<priority>"):])
	j := strings.IndexByte(rest, '<')
	if j < 0 {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(rest[:j]))
	if err != nil || n < -128 || n > 127 {
		return 0
	}
	return n
}

// IsLocal implements Routing.
func (r *Router) IsLocal(ctx context.Context, bare jid.JID) (bool, error) {
	if bare.Domainpart() != r.domainStr || bare.Localpart() == "" {
		return false, nil
	}
	if len(r.sessionsOf(bareString(bare))) > 0 {
		return true, nil
	}
	sctx, cancel := r.StoreContext(ctx)
	defer cancel()
	_, err := r.cfg.Accounts.Account(sctx, auth.Number(bare.Localpart()))
	if errors.Is(err, auth.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Normalize implements Routing.
func (r *Router) Normalize(j jid.JID) (jid.JID, error) {
	if j.Domainpart() != r.domainStr || j.Localpart() == "" {
		return j, nil
	}
	local := j.Localpart()
	n, err := r.cfg.Parser.Parse(local)
	if err != nil {
		return j, NewError(stanza.Cancel, stanza.ItemNotFound, "not a valid phone number")
	}
	if string(n) == local {
		return j, nil
	}
	out, err := jid.New(string(n), j.Domainpart(), j.Resourcepart())
	if err != nil {
		return j, NewError(stanza.Modify, stanza.JIDMalformed, "")
	}
	return out, nil
}

// FromSession handles a stanza read from a local session, its From
// stamped with the session's JID: the answers to QuerySession are taken,
// 'to' is normalised (unless the session's address cache did it), the
// PreRoute hooks run, then presence goes to the PresenceOut hooks and the
// rest is routed.
func (r *Router) FromSession(ctx context.Context, sess *Session, st *Stanza) {
	if st.Kind == KindIQ && r.answered(sess, st) {
		return
	}
	r.routed(st.Kind)
	if st.To.Equal(jid.JID{}) {
		if st.Kind != KindPresence {
			st.setTo(sess.bare)
			st.toStr, st.toBare = sess.bareStr, sess.bareStr
			st.ToAbsent = true
		}
	} else if st.toStr == "" { // not yet normalised by the session's cache
		to, err := r.Normalize(st.To)
		if err != nil {
			r.Bounce(st, err)
			return
		}
		st.setTo(to)
	}
	if r.run(ctx, PreRoute, st, sess) {
		return
	}
	if st.Kind == KindPresence {
		r.run(ctx, PresenceOut, st, sess)
		return
	}
	r.route(ctx, st, sess)
}

// RouteInbound routes a stanza that arrived from another server (its From
// already checked against the peer's authenticated domain): the local
// address is normalised like a client's, then it is routed.
func (r *Router) RouteInbound(ctx context.Context, st *Stanza) {
	r.routed(st.Kind)
	if st.To.Equal(jid.JID{}) {
		st.setTo(r.domain)
	}
	to, err := r.Normalize(st.To)
	if err != nil {
		r.Bounce(st, err)
		return
	}
	st.setTo(to)
	r.route(ctx, st, nil)
}

func (r *Router) routed(k Kind) {
	if r.cfg.Routed != nil {
		r.cfg.Routed(k)
	}
}

// Route implements Routing: RFC 6121 §8 delivery of a stanza whose From is
// set.
func (r *Router) Route(ctx context.Context, st *Stanza) { r.route(ctx, st, nil) }

func (r *Router) route(ctx context.Context, st *Stanza, origin *Session) {
	to := st.To
	if dom := to.Domainpart(); dom != r.domainStr {
		if sc, ok := r.hooks.hosts[dom]; ok {
			r.toHost(ctx, sc, st, origin)
			return
		}
		if r.remote != nil {
			defer r.recoverHook("remote route")
			r.remote(ctx, st)
			return
		}
		r.Bounce(st, NewError(stanza.Cancel, stanza.RemoteServerNotFound, "federation is not available"))
		return
	}
	if to.Localpart() == "" {
		r.toServer(ctx, st, origin)
		return
	}
	if r.run(ctx, Inbound, st, origin) {
		return
	}
	switch st.Kind {
	case KindPresence:
		if st.Type == "probe" {
			r.run(ctx, Probe, st, origin)
		} else {
			r.run(ctx, PresenceIn, st, origin)
		}
	case KindMessage:
		r.routeMessage(ctx, st, origin)
	case KindIQ:
		if to.Resourcepart() == "" {
			r.serveIQ(ctx, ScopeAccount, st, origin)
			return
		}
		if sess := r.Session(to); sess != nil {
			sess.Send(st.Bytes())
			return
		}
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
	}
}

// toServer handles stanzas addressed to the domain itself.
func (r *Router) toServer(ctx context.Context, st *Stanza, origin *Session) {
	if st.Kind != KindIQ {
		r.run(ctx, ToServer, st, origin)
		return
	}
	if st.To.Resourcepart() != "" {
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
		return
	}
	r.serveIQ(ctx, ScopeServer, st, origin)
}

// toHost handles stanzas addressed to a component host or an address at it.
func (r *Router) toHost(ctx context.Context, sc Scope, st *Stanza, origin *Session) {
	if r.run(ctx, ToHost, st, origin) {
		return
	}
	if st.Kind == KindIQ {
		r.serveIQ(ctx, sc, st, origin)
		return
	}
	if !r.run(ctx, ToServer, st, origin) && st.Kind == KindMessage {
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
	}
}

// serveIQ runs the handler registered for an iq get/set. Its answer
// acknowledges what origin (nil: not a local session) sent before it, so
// it is written only once the work held for those stanzas is done
// (Session.Hold): a timeout there answers internal-server-error instead.
func (r *Router) serveIQ(ctx context.Context, scope Scope, st *Stanza, origin *Session) {
	if st.Type != "get" && st.Type != "set" {
		if st.Type != "result" && st.Type != "error" {
			r.Bounce(st, NewError(stanza.Modify, stanza.BadRequest, "iq type must be get, set, result or error"))
		}
		return // results and errors to the server or a bare JID end here
	}
	h := r.hooks.iqHandler(scope, st.Type, st.Payload)
	if h == nil {
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
		return
	}
	// ScopeAccount handlers get iqs for every valid number of the domain
	// (Normalize refused the others), with or without an account: whether
	// a number has an account must not be visible to other users (SPEC.md
	// "Limits on what clients send"), so there is no account check here and
	// each handler answers a latent number as it answers an account.
	hctx, cancel := context.WithTimeout(ctx, r.cfg.IQTimeout)
	defer cancel()
	result, err := func() (res []byte, err error) {
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("panic in iq handler", "payload", st.Payload.Space, "panic", p)
				err = NewError(stanza.Wait, stanza.InternalServerError, "")
			}
		}()
		return h(hctx, st)
	}()
	if origin != nil { // an error answers too, so it waits as well
		sctx, cancel := r.StoreContext(ctx)
		if serr := origin.Settle(sctx); serr != nil {
			r.log.Error("iq answer held back: earlier stanzas not stored in time", "err", serr)
			err = NewError(stanza.Wait, stanza.InternalServerError, "")
		}
		cancel()
	}
	if err != nil {
		r.Bounce(st, err)
		return
	}
	r.reply(st.Reply("result", result))
}

// routeMessage delivers a message to a local account (RFC 6121 §8.5).
func (r *Router) routeMessage(ctx context.Context, st *Stanza, origin *Session) {
	list := r.sessionsOf(st.ToBare())
	hooked := len(r.hooks.points[Delivered][KindMessage]) > 0
	if res := st.To.Resourcepart(); res != "" {
		for _, to := range list {
			if to.resource == res {
				to.Send(st.Bytes())
				if hooked {
					ev := r.event(st, origin)
					ev.Delivered = append(ev.Delivered, to)
					r.runEvent(ctx, Delivered, ev)
				}
				return
			}
		}
		// §8.5.3.2.1: no such resource
		switch st.Type {
		case "error", "headline":
			return
		case "groupchat":
			r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
			return
		}
	}
	switch st.Type {
	case "error":
		return
	case "groupchat":
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
		return
	}
	best := int32(-1)
	n := 0
	for _, sess := range list {
		if sess.takesBare() {
			n++
			best = max(best, sess.priority.Load())
		}
	}
	if n == 0 {
		r.undelivered(ctx, st, origin)
		return
	}
	b := st.Bytes()
	// The delivered set is decided once: priorities may change meanwhile,
	// and the Delivered hooks see exactly who got it.
	var ev *Event
	if hooked {
		ev = r.event(st, origin)
	}
	for _, sess := range list {
		if !sess.takesBare() {
			continue
		}
		// normal goes to the resources of highest priority, chat and
		// headline to all non-negative ones.
		if (st.Type == "normal" || st.Type == "") && sess.priority.Load() != best {
			continue
		}
		sess.Send(b)
		if ev != nil {
			ev.Delivered = append(ev.Delivered, sess)
		}
	}
	if ev != nil {
		r.runEvent(ctx, Delivered, ev)
	}
}

// undelivered hands a message to a local account with no available
// resource to the Undelivered hooks; when none takes it, the sender gets
// service-unavailable. Headlines are dropped (RFC 6121 §8.5.2.1.1).
func (r *Router) undelivered(ctx context.Context, st *Stanza, origin *Session) {
	if st.Type == "headline" {
		return
	}
	if !r.run(ctx, Undelivered, st, origin) {
		r.Bounce(st, NewError(stanza.Cancel, stanza.ServiceUnavailable, ""))
	}
}

// event returns a pooled Event for st.
func (r *Router) event(st *Stanza, origin *Session) *Event {
	ev := r.events.Get().(*Event)
	ev.Stanza, ev.Origin = st, origin
	ev.Delivered = ev.inline[:0]
	return ev
}

// run runs the hooks of point p for st; true when one stopped it.
func (r *Router) run(ctx context.Context, p Point, st *Stanza, origin *Session) bool {
	if len(r.hooks.points[p][st.Kind]) == 0 {
		return false
	}
	return r.runEvent(ctx, p, r.event(st, origin))
}

// runEvent runs the hooks of point p on ev and gives ev back to the pool.
func (r *Router) runEvent(ctx context.Context, p Point, ev *Event) (stopped bool) {
	st := ev.Stanza
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("panic in a stanza hook", "point", p, "kind", st.Kind.String(), "panic", v)
			stopped = true
		}
		clear(ev.inline[:])
		*ev = Event{}
		r.events.Put(ev)
	}()
	for _, h := range r.hooks.points[p][st.Kind] {
		err := h.fn(ctx, ev)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrHandled) {
			r.Bounce(st, err)
		}
		return true
	}
	return false
}

// Bounce answers st with an error, unless st is itself an error or an iq
// result (RFC 6120 §8.3.1). err is a stanza.Error, or anything else, which
// is logged and answered with internal-server-error.
func (r *Router) Bounce(st *Stanza, err error) {
	if st.Type == "error" || (st.Kind == KindIQ && st.Type == "result") || st.From.Equal(jid.JID{}) {
		return
	}
	var se stanza.Error
	var ae AppError
	var reply *Stanza
	switch {
	case errors.As(err, &ae):
		reply = st.Reply("error", appendError(nil, ae.Err, ae.App))
	case errors.As(err, &se):
		reply = st.ErrorReply(se)
	default:
		r.log.Error("handler failed", "kind", st.Kind.String(), "to", st.To.String(), "err", err)
		reply = st.ErrorReply(NewError(stanza.Wait, stanza.InternalServerError, ""))
	}
	if reply.From.Equal(jid.JID{}) {
		reply.From = r.domain
	}
	if st.Kind == KindPresence && st.ToAbsent {
		reply.From = jid.JID{}
	}
	r.reply(reply)
}

// reply sends a stanza the server generated in answer to st.From. A local
// requester gets it straight on its stream, past the hooks: it asked.
func (r *Router) reply(re *Stanza) {
	if re.To.Domainpart() == r.domainStr && re.To.Localpart() != "" {
		if re.To.Resourcepart() != "" {
			if sess := r.Session(re.To); sess != nil {
				sess.Send(re.Bytes())
			}
		}
		return // a bare-JID sender is the server acting for an account; nothing to answer
	}
	r.route(context.Background(), re, nil)
}

func (r *Router) recoverHook(what string) {
	if v := recover(); v != nil {
		r.log.Error("panic in a module", "in", what, "panic", v)
	}
}
