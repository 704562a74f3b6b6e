package router

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"dialtone/xmppd/wire"
)

// A Module is one feature of the server (one XEP, mostly): a type whose
// Register asks the Hooks for what it needs, the way a Prosody module calls
// module:hook. Register is called once, before the server serves; an
// error stops the server from starting.
type Module interface {
	Register(h *Hooks) error
}

// ModuleFunc makes a function a Module.
type ModuleFunc func(h *Hooks) error

// Register calls f.
func (f ModuleFunc) Register(h *Hooks) error { return f(h) }

// Scope says which addressee an IQ handler or a disco entry is for. Scopes
// are bits: ScopeServer|ScopeAccount registers for both.
type Scope uint32

// Scopes.
const (
	// ScopeServer: addressed to the server's domain.
	ScopeServer Scope = 1 << iota
	// ScopeAccount: addressed to the bare JID of a local number, or with
	// no 'to' (then To is set to the sender's bare JID and ToAbsent is
	// true). The number may have no account: handlers must answer another
	// user the same way for a latent number as for an account (SPEC.md:
	// whether a number has an account is not visible). Handlers that
	// change data must check that To is the sender's own account
	// (iq.To.Equal(iq.From.Bare())) and answer forbidden otherwise.
	ScopeAccount
	// Hosts (Hooks.AddHost) take the bits from here on.
	firstHostScope
)

// IQType says which iq types a handler takes; a bit mask.
type IQType uint8

// IQ types of requests.
const (
	IQGet IQType = 1 << iota
	IQSet
)

// IQHandler answers an iq of type get or set. It returns the child element
// of the result (nil for an empty result), or an error: a stanza.Error is
// sent as it is, any other error is logged and answered with
// internal-server-error. The router builds and sends the reply.
type IQHandler func(ctx context.Context, iq *Stanza) (result []byte, err error)

// Point is a place on the data path where stanza hooks run.
type Point uint8

// Points, in the order a stanza meets them.
const (
	// PreRoute: a local session sent it; 'from' stamped, 'to' normalised;
	// before routing (outbound blocking, carbons <sent/>, archiving what is
	// sent). Presence goes on to PresenceOut, the rest to routing.
	PreRoute Point = iota
	// Inbound: addressed to a local account or one of its resources, from
	// anywhere (a local session, another server, the server itself), before
	// delivery (inbound blocking, archiving what is received).
	Inbound
	// ToServer: messages and presence addressed to the domain itself, or
	// to a component host (Hooks.AddHost) or an address at it. (IQs go to
	// HandleIQ.)
	ToServer
	// Delivered: a message after delivery; Event.Delivered lists the
	// sessions that got it (carbons <received/>).
	Delivered
	// Undelivered: a message no session took (offline storage). The first
	// hook that returns ErrHandled owns it; when none does, the router
	// answers service-unavailable.
	Undelivered
	// PresenceOut: presence a local session sent, after PreRoute.
	PresenceOut
	// PresenceIn: presence other than probes to a local account or
	// resource, after Inbound.
	PresenceIn
	// Probe: presence probes to a local account, after Inbound.
	Probe
	numPoints
)

// KindMask says which kinds of stanza a hook sees; a bit mask.
type KindMask uint8

// Kind masks.
const (
	Messages  KindMask = 1 << KindMessage
	Presences KindMask = 1 << KindPresence
	IQs       KindMask = 1 << KindIQ
	AllKinds           = Messages | Presences | IQs
)

// ErrHandled, returned by a stanza hook, stops the stanza: it was dealt
// with (or dropped on purpose).
var ErrHandled = errors.New("router: stanza handled")

// StanzaHook runs at a Point. It returns nil to let the stanza go on,
// ErrHandled to stop it, or a stanza.Error to stop it and bounce it to its
// sender (never for errors and iq results); any other error is logged and
// bounced as internal-server-error. Hooks run on the goroutine of the
// stream that carried the stanza: they must not block for long, and the
// Event must not be kept after the hook returns.
type StanzaHook func(ctx context.Context, ev *Event) error

// Event is what a stanza hook sees.
type Event struct {
	Stanza *Stanza
	// Origin is the local session that sent the stanza; nil when it came
	// from another server or from the server itself.
	Origin *Session
	// Delivered lists the sessions that got a message (Delivered only).
	Delivered []*Session

	inline [4]*Session // backing of Delivered for the usual few sessions
}

// SessionEvent is a moment in the life of a client session.
type SessionEvent uint8

// Session events.
const (
	// Authenticated: SASL succeeded; the session is not bound yet (its JID
	// is the bare JID).
	Authenticated SessionEvent = iota
	// Bound: a resource is bound and the session is in the table.
	Bound
	// Available: the session sent its first available presence with a
	// non-negative priority (Router.SetPresence).
	Available
	// Unavailable: a session that had sent available presence (of any
	// priority) sent unavailable presence, or closed.
	Unavailable
	// Closed: the stream ended; the session is out of the table. Its last
	// presence is still readable during the hooks.
	Closed
	// Hibernated and Resumed are for stream management (XEP-0198).
	Hibernated
	Resumed
	// PresenceSet: a bound session's presence was recorded
	// (Router.SetPresence), every time, also when it stays available (a
	// new status or priority) or goes unavailable; after Available or
	// Unavailable. For modules that mirror sessions elsewhere (a cluster).
	PresenceSet
	numSessionEvents
)

// SessionHook runs at a session event.
type SessionHook func(ctx context.Context, s *Session)

// Phase is a part of a client stream's negotiation.
type Phase uint8

// Phases.
const (
	// PreAuth: after TLS, before authentication (features next to the
	// SASL mechanisms).
	PreAuth Phase = iota
	// PostAuth: after authentication, before binding (features next to
	// bind; nonzas such as XEP-0198 <resume/>).
	PostAuth
	// SessionBound: after binding (nonzas such as XEP-0198 <r/>, XEP-0352
	// <active/>).
	SessionBound
	numPhases
)

// ConnInfo describes a client stream to a stream feature or nonza handler.
type ConnInfo struct {
	Secure    bool // TLS, or WebSocket over https
	WebSocket bool
	// Session is the authenticated session (nil before authentication).
	Session *Session
	// Stream is the stream's own Sink, under any wrapper of Session's
	// (nil before authentication).
	Stream Sink
	// Resume, in PostAuth, makes the stream carry s, a kept session
	// (Session.Keep) of the same account, instead of Session, which is
	// dropped: once the nonza's reply is written, the stream serves s
	// as bound (XEP-0198 resumption). The caller has made the stream
	// s's Sink underneath its wrappers (Stream).
	Resume func(s *Session)
}

// StreamEndHandler decides what becomes of a kept session (Session.Keep)
// whose stream ended. stream is the Sink of the stream that ended;
// dropped says it ended without the client closing it or the server
// ending it with an error (the network went away, the client went
// silent). True means the module keeps the session (it waits for a new
// stream, or another stream carries it already): the stream's end is not
// the session's end, and the module ends it later with Router.Closed.
type StreamEndHandler func(ctx context.Context, s *Session, stream Sink, dropped bool) bool

// NonzaHandler handles a top-level element that is no stanza (XEP-0198
// <enable/>, XEP-0352 <active/>). reply, if any, is written to the stream;
// an error ends the stream (a stream error condition from package stream,
// or unsupported-stanza-type).
type NonzaHandler func(ctx context.Context, c ConnInfo, el wire.Element) (reply []byte, err error)

// Identity is a disco#info identity (XEP-0030).
type Identity struct {
	Category, Type, Name, Lang string
}

// DiscoItem is a disco#items item (XEP-0030).
type DiscoItem struct {
	JID, Node, Name string
}

// Hooks is what modules register on (Prosody's module:hook, in Go's idiom).
// Register everything before the server serves (Router.Load).
type Hooks struct {
	r *Router

	iq       map[iqKey]*iqEntry
	points   [numPoints][KindIQ + 1][]hook
	sessions [numSessionEvents][]sessionHook
	features [numPhases][]func(ConnInfo) []byte
	nonzas   [numPhases]map[string]NonzaHandler
	ended    StreamEndHandler
	inlines  [numInlines][]inlineEntry
	seq      int

	hosts      map[string]Scope
	hostScopes Scope

	discoFeatures   map[Scope][]string
	discoIdentities map[Scope][]Identity
	discoItems      map[Scope][]DiscoItem

	errs []error
}

type iqKey struct {
	scope   Scope // one bit
	payload xml.Name
}

type iqEntry struct {
	get, set IQHandler
}

type hook struct {
	priority, seq int
	fn            StanzaHook
}

type sessionHook struct {
	priority, seq int
	fn            SessionHook
}

// NewHooks returns Hooks outside any Router, whose Router is nil: for a
// module's tests to see what it registers.
func NewHooks() *Hooks { return &Hooks{} }

// Err returns what went wrong in the registrations so far.
func (h *Hooks) Err() error { return errors.Join(h.errs...) }

// Router is the router the modules are registered on.
func (h *Hooks) Router() *Router { return h.r }

// scopes splits a scope mask into its bits.
func scopes(s Scope) []Scope {
	var out []Scope
	for s != 0 {
		bit := Scope(1) << bits.TrailingZeros32(uint32(s))
		out = append(out, bit)
		s &^= bit
	}
	return out
}

// HandleIQ registers fn for iqs of the given types (IQGet|IQSet for both)
// whose payload (first child) has the given name, addressed in scope. A
// payload name with an empty Local matches every element of its namespace
// that has no handler of its own. Registering the same scope, type and
// payload twice is an error that Load returns: a server with two owners
// of one namespace never starts. Advertise the namespace with AddFeature.
func (h *Hooks) HandleIQ(scope Scope, typ IQType, payload xml.Name, fn IQHandler) {
	if h.iq == nil {
		h.iq = make(map[iqKey]*iqEntry)
	}
	if typ&(IQGet|IQSet) == 0 || scope == 0 {
		h.errs = append(h.errs, fmt.Errorf("router: handler for {%s}%s: no scope or iq type", payload.Space, payload.Local))
		return
	}
	for _, sc := range scopes(scope) {
		if sc >= firstHostScope && sc&h.hostScopes == 0 {
			h.errs = append(h.errs, fmt.Errorf("router: handler for {%s}%s: unknown scope %#x", payload.Space, payload.Local, sc))
			continue
		}
		k := iqKey{sc, payload}
		e := h.iq[k]
		if e == nil {
			e = &iqEntry{}
			h.iq[k] = e
		}
		for _, t := range []struct {
			bit IQType
			fn  *IQHandler
			typ string
		}{{IQGet, &e.get, "get"}, {IQSet, &e.set, "set"}} {
			if typ&t.bit == 0 {
				continue
			}
			if *t.fn != nil {
				h.errs = append(h.errs, fmt.Errorf("router: two handlers of iq %s {%s}%s in scope %#x", t.typ, payload.Space, payload.Local, sc))
				continue
			}
			*t.fn = fn
		}
	}
}

// iqHandler returns the handler of an iq, or nil.
func (h *Hooks) iqHandler(scope Scope, typ string, payload xml.Name) IQHandler {
	e := h.iq[iqKey{scope, payload}]
	if e == nil || (typ == "get" && e.get == nil) || (typ == "set" && e.set == nil) {
		e = h.iq[iqKey{scope, xml.Name{Space: payload.Space}}]
	}
	switch {
	case e == nil:
		return nil
	case typ == "get":
		return e.get
	case typ == "set":
		return e.set
	}
	return nil
}

// Hook adds fn at point p for the kinds of stanza in kinds. Hooks run in
// order of priority, higher first, and of registration among equals.
func (h *Hooks) Hook(p Point, kinds KindMask, priority int, fn StanzaHook) {
	if p >= numPoints {
		h.errs = append(h.errs, fmt.Errorf("router: no hook point %d", p))
		return
	}
	h.seq++
	for k := KindMessage; k <= KindIQ; k++ {
		if kinds&(1<<k) != 0 {
			h.points[p][k] = append(h.points[p][k], hook{priority, h.seq, fn})
		}
	}
}

// OnSession adds fn at a session event, with a priority as Hook.
func (h *Hooks) OnSession(e SessionEvent, priority int, fn SessionHook) {
	if e >= numSessionEvents {
		h.errs = append(h.errs, fmt.Errorf("router: no session event %d", e))
		return
	}
	h.seq++
	h.sessions[e] = append(h.sessions[e], sessionHook{priority, h.seq, fn})
}

// StreamFeature adds an element to the stream features a client is
// offered in phase (PreAuth or PostAuth); fn returns nil to offer none.
func (h *Hooks) StreamFeature(phase Phase, fn func(c ConnInfo) []byte) {
	if phase >= numPhases {
		h.errs = append(h.errs, fmt.Errorf("router: no phase %d", phase))
		return
	}
	h.features[phase] = append(h.features[phase], fn)
}

// Features returns the stream features the modules offer in phase.
func (h *Hooks) Features(phase Phase, c ConnInfo) []byte {
	if phase >= numPhases {
		return nil
	}
	var b []byte
	for _, fn := range h.features[phase] {
		b = append(b, fn(c)...)
	}
	return b
}

// HandleNonza registers fn for top-level non-stanza elements of namespace
// ns in phase (PostAuth or SessionBound). Two handlers of one namespace in
// one phase are an error.
func (h *Hooks) HandleNonza(phase Phase, ns string, fn NonzaHandler) {
	if phase >= numPhases {
		h.errs = append(h.errs, fmt.Errorf("router: no phase %d", phase))
		return
	}
	if h.nonzas[phase] == nil {
		h.nonzas[phase] = make(map[string]NonzaHandler)
	}
	if h.nonzas[phase][ns] != nil {
		h.errs = append(h.errs, fmt.Errorf("router: two handlers of nonzas %s", ns))
		return
	}
	h.nonzas[phase][ns] = fn
}

// Nonza returns the handler of top-level elements of namespace ns in
// phase, or nil.
func (h *Hooks) Nonza(phase Phase, ns string) NonzaHandler {
	if phase >= numPhases {
		return nil
	}
	return h.nonzas[phase][ns]
}

// OnStreamEnd sets the handler of the end of kept sessions' streams (see
// StreamEndHandler); one module may set it.
func (h *Hooks) OnStreamEnd(fn StreamEndHandler) {
	if h.ended != nil {
		h.errs = append(h.errs, errors.New("router: two handlers of the end of streams"))
		return
	}
	h.ended = fn
}

// AddHost makes the router serve a component host (upload.DOMAIN,
// groups.DOMAIN): stanzas to it or to an address at it stay here, iqs go
// to the handlers registered in the Scope returned, messages and presence
// to the ToServer hooks. Adding one host twice returns the same Scope.
func (h *Hooks) AddHost(domain string) Scope {
	if h.hosts == nil {
		h.hosts = make(map[string]Scope)
	}
	if sc, ok := h.hosts[domain]; ok {
		return sc
	}
	n := len(h.hosts)
	if n >= 30 {
		h.errs = append(h.errs, fmt.Errorf("router: too many hosts (%s)", domain))
		return 0
	}
	sc := firstHostScope << n
	h.hosts[domain] = sc
	h.hostScopes |= sc
	return sc
}

// Hosts returns the component hosts and their scopes.
func (h *Hooks) Hosts() map[string]Scope { return h.hosts }

// AddFeature advertises a disco#info feature var in scope.
func (h *Hooks) AddFeature(scope Scope, feature string) {
	if h.discoFeatures == nil {
		h.discoFeatures = make(map[Scope][]string)
	}
	for _, sc := range scopes(scope) {
		if !slices.Contains(h.discoFeatures[sc], feature) {
			h.discoFeatures[sc] = append(h.discoFeatures[sc], feature)
		}
	}
}

// AddIdentity advertises a disco#info identity in scope.
func (h *Hooks) AddIdentity(scope Scope, id Identity) {
	if h.discoIdentities == nil {
		h.discoIdentities = make(map[Scope][]Identity)
	}
	for _, sc := range scopes(scope) {
		h.discoIdentities[sc] = append(h.discoIdentities[sc], id)
	}
}

// AddItem lists a disco#items item in scope.
func (h *Hooks) AddItem(scope Scope, item DiscoItem) {
	if h.discoItems == nil {
		h.discoItems = make(map[Scope][]DiscoItem)
	}
	for _, sc := range scopes(scope) {
		h.discoItems[sc] = append(h.discoItems[sc], item)
	}
}

// DiscoFeatures returns the features advertised in one scope (one bit),
// in registration order.
func (h *Hooks) DiscoFeatures(scope Scope) []string { return h.discoFeatures[scope] }

// DiscoIdentities returns the identities advertised in one scope.
func (h *Hooks) DiscoIdentities(scope Scope) []Identity { return h.discoIdentities[scope] }

// DiscoItems returns the items listed in one scope.
func (h *Hooks) DiscoItems(scope Scope) []DiscoItem { return h.discoItems[scope] }

// Go runs f in a goroutine that the router owns: f's context is cancelled
// when the server shuts down (after the sessions ended), and the shutdown
// waits for f to return. Use it for a module's background work. Outside a
// Router (NewHooks) it does nothing.
func (h *Hooks) Go(f func(ctx context.Context)) {
	if h.r != nil {
		h.r.Go(f)
	}
}

// sort orders every hook list by priority, then registration.
func (h *Hooks) sort() {
	for p := range h.points {
		for k := range h.points[p] {
			slices.SortStableFunc(h.points[p][k], func(a, b hook) int {
				if a.priority != b.priority {
					return b.priority - a.priority
				}
				return a.seq - b.seq
			})
		}
	}
	for e := range h.sessions {
		slices.SortStableFunc(h.sessions[e], func(a, b sessionHook) int {
			if a.priority != b.priority {
				return b.priority - a.priority
			}
			return a.seq - b.seq
		})
	}
}

// Inline is a login request that carries elements for other features
// inline, so that one round trip authenticates, binds and sets the
// session up (XEP-0388 <authenticate/>, XEP-0386 <bind/>).
type Inline uint8

// Where inline elements go.
const (
	// InlineAuth: children of the authentication request, handled once
	// the client authenticated, before any binding (XEP-0198 <resume/>).
	// A handler that took the stream over (resumed an older session)
	// returns ErrNoBind with its reply, and no resource is bound.
	InlineAuth Inline = iota
	// InlineBind: children of the bind request, handled once the
	// resource is bound and before the client is told (carbons
	// <enable/>, XEP-0198 <enable/>).
	InlineBind
	numInlines
)

// ErrNoBind is returned by an InlineAuth handler that took the stream
// over, so that no resource is bound for the request.
var ErrNoBind = errors.New("router: the stream was taken over; bind nothing")

type inlineEntry struct {
	advert xml.Name
	fn     NonzaHandler
}

// HandleInline registers fn for the inline children of namespace
// advert.Space of where; advert is how the feature is announced (for
// InlineAuth an empty element of that name inside the offer's <inline/>;
// for InlineBind, <feature var=advert.Space/>). fn gets the child as a
// nonza handler does and its reply goes into the success (InlineAuth) or
// the bound result (InlineBind); an error other than ErrNoBind ends the
// stream. Two handlers of one namespace in one place are an error.
func (h *Hooks) HandleInline(where Inline, advert xml.Name, fn NonzaHandler) {
	if where >= numInlines {
		h.errs = append(h.errs, fmt.Errorf("router: no inline place %d", where))
		return
	}
	for _, e := range h.inlines[where] {
		if e.advert.Space == advert.Space {
			h.errs = append(h.errs, fmt.Errorf("router: two inline handlers of %s", advert.Space))
			return
		}
	}
	h.inlines[where] = append(h.inlines[where], inlineEntry{advert, fn})
}

// InlineHandler returns the handler of inline children of namespace ns
// in where, or nil.
func (h *Hooks) InlineHandler(where Inline, ns string) NonzaHandler {
	if where >= numInlines {
		return nil
	}
	for _, e := range h.inlines[where] {
		if e.advert.Space == ns {
			return e.fn
		}
	}
	return nil
}

// InlineAdverts returns how the inline features of where are announced,
// in registration order.
func (h *Hooks) InlineAdverts(where Inline) []xml.Name {
	if where >= numInlines {
		return nil
	}
	out := make([]xml.Name, 0, len(h.inlines[where]))
	for _, e := range h.inlines[where] {
		out = append(out, e.advert)
	}
	return out
}
