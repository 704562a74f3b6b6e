package router

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"mellium.im/xmpp/jid"
)

// Sink is where a Session's stanzas go: the write queue of a client
// stream (package c2s), under the wrappers modules install
// (Session.WrapSink: XEP-0198 keeps what is sent, also while the stream
// is gone; XEP-0352 holds some of it back); later a session on another
// node of a cluster: hence an interface. Each Send of a stanza carries
// one element (a WebSocket frames each, XEP-0198 counts each).
type Sink interface {
	// Send queues b, one or more complete top-level elements, and never
	// blocks; false when the stream is closing (or just closed because
	// its queue overflowed).
	Send(b []byte) bool
	// Close ends the stream with a stream error condition ("" for a
	// plain close) after what is queued.
	Close(cond, text string)
}

// Session is the routing handle of one client stream: its identity, its
// presence, the state modules keep for it, and the Sink its stanzas go to.
// It is made when the client authenticates (its JID is then the bare JID)
// and bound to a resource by Router.Bind.
type Session struct {
	full     jid.JID
	fullStr  string
	bare     jid.JID
	bareStr  string
	resource string
	sink     atomic.Pointer[sinkBox]
	sinkMu   sync.Mutex // serialises WrapSink

	// in counts the stanzas read from the client (XEP-0198 h); keeps
	// says a module keeps the session across its streams (Keep).
	in    atomic.Uint32
	keeps atomic.Bool
	// remote: the session is on another node of a cluster; this is its
	// mirror (NewRemoteSession).
	remote bool

	// ctx is cancelled when the session closes (Router.Unregister).
	ctx *sessionCtx

	presence atomic.Pointer[Stanza]
	priority atomic.Int32
	seq      atomic.Uint64 // ids of the iqs the server sends it

	// state holds what modules keep for the session (Key); made on first use.
	stateMu sync.Mutex
	state   atomic.Pointer[[]atomic.Value]

	// pending is the work under way for what the client sent (Hold).
	pending barrier
}

// NewSession returns a session of j whose stanzas go to sink: unbound
// when j is the account's bare JID (Router.Bind binds it), bound already
// when j is a full JID (the fakes of module tests). Its context derives
// from parent and ends when the session closes.
func NewSession(parent context.Context, j jid.JID, sink Sink) *Session {
	bare := j.Bare()
	s := &Session{full: bare, bare: bare}
	if sink != nil {
		s.sink.Store(&sinkBox{sink})
	}
	s.bareStr = bare.String()
	s.fullStr = s.bareStr
	if j.Resourcepart() != "" {
		s.bind(j)
	}
	s.ctx = newSessionCtx(parent)
	return s
}

// JID is the session's full JID (its bare JID before it is bound).
func (s *Session) JID() jid.JID { return s.full }

// String is the session's JID as a string.
func (s *Session) String() string { return s.fullStr }

// Bare is the JID of the session's account.
func (s *Session) Bare() jid.JID { return s.bare }

// Resource is the bound resource ("" before binding).
func (s *Session) Resource() string { return s.resource }

// Context is cancelled when the session closes.
func (s *Session) Context() context.Context { return s.ctx }

// Presence is the last available presence the session broadcast, nil when
// it sent none or went unavailable.
func (s *Session) Presence() *Stanza { return s.presence.Load() }

// Priority is the priority of that presence.
func (s *Session) Priority() int { return int(s.priority.Load()) }

// Available reports whether the session sent available presence (RFC
// 6121 §4.2): an available resource, which gets presence.
func (s *Session) Available() bool { return s.presence.Load() != nil }

// takesBare reports whether the session sent available presence with a
// non-negative priority (RFC 6121 §8.5.2.1): messages to the bare JID go
// to it.
func (s *Session) takesBare() bool {
	return s.presence.Load() != nil && s.priority.Load() >= 0
}

// SetPresence records p, the presence the session broadcast (nil for
// unavailable), and reports whether the session just became available
// (with a non-negative priority: messages to the bare JID reach it) or
// unavailable. Router.SetPresence calls
// it and fires the events; fakes of Routing in module tests call it.
func (s *Session) SetPresence(p *Stanza) (available, unavailable bool) {
	if p == nil {
		return false, s.presence.Swap(nil) != nil
	}
	p.Bytes() // computed before publishing: readers then only read it
	s.priority.Store(int32(presencePriority(p)))
	was := s.presence.Swap(p)
	return was == nil && s.priority.Load() >= 0, false
}

// Send queues b for the client; it never blocks (see Sink).
func (s *Session) Send(b []byte) bool {
	if k := s.sink.Load(); k != nil {
		return k.Send(b)
	}
	return false
}

// Close ends the session's stream with a stream error condition ("" for
// a plain close) after what is queued for it.
func (s *Session) Close(cond, text string) {
	if k := s.sink.Load(); k != nil {
		k.Close(cond, text)
	}
}

// sinkBox holds a Sink for atomic swaps.
type sinkBox struct{ Sink }

// WrapSink puts wrap(current sink) in place of the session's sink, for a
// module that must see, hold or keep what the session is sent (XEP-0198
// counts and keeps it, XEP-0352 holds some of it back). Wrappers stack:
// the last one installed sees a stanza first.
func (s *Session) WrapSink(wrap func(inner Sink) Sink) {
	s.sinkMu.Lock()
	defer s.sinkMu.Unlock()
	var inner Sink
	if k := s.sink.Load(); k != nil {
		inner = k.Sink
	}
	s.sink.Store(&sinkBox{wrap(inner)})
}

// CountIn counts one stanza read from the client; the client stream
// calls it for every stanza it reads.
func (s *Session) CountIn() { s.in.Add(1) }

// StanzasIn is how many stanzas were read from the client over the
// session's life (modulo 2^32: XEP-0198's h).
func (s *Session) StanzasIn() uint32 { return s.in.Load() }

// Keep marks the session as kept by a module across the end of its
// stream (XEP-0198 resumption): a stream that starts closing no longer
// takes it out of the table, since its Sink keeps what it is sent; the
// module decides at Router.StreamEnded and ends it with Router.Closed.
func (s *Session) Keep() { s.keeps.Store(true) }

// Kept reports whether a module keeps the session (Keep).
func (s *Session) Kept() bool { return s.keeps.Load() }

// NextID returns an id, unique for the session's whole life, for an iq the
// server sends it, with the given prefix.
func (s *Session) NextID(prefix string) string {
	return prefix + strconv.FormatUint(s.seq.Add(1), 10)
}

// bind gives the session its resource; before anyone else sees it.
func (s *Session) bind(full jid.JID) {
	s.full, s.fullStr, s.resource = full, full.String(), full.Resourcepart()
}

// Key is a slot of per-session state owned by a module, typed, without a
// global map:
//
//	var carbonsOn = router.NewKey[atomic.Bool]()  // package level
//	carbonsOn.Get(sess).Store(true)
//
// The value is made (zero) on first use and lives as long as the session.
type Key[T any] struct{ i int }

var numKeys atomic.Int32

// NewKey returns a new slot; make keys once, in package-level variables.
func NewKey[T any]() Key[T] { return Key[T]{i: int(numKeys.Add(1) - 1)} }

// Get returns the session's value of the slot, made on first use.
func (k Key[T]) Get(s *Session) *T {
	if st := s.state.Load(); st != nil && k.i < len(*st) {
		if v := (*st)[k.i].Load(); v != nil {
			return v.(*T)
		}
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	st := s.state.Load()
	if st == nil || k.i >= len(*st) {
		// Grown under the lock; values are pointers, shared by both slices.
		grown := make([]atomic.Value, max(int(numKeys.Load()), k.i+1))
		if st != nil {
			for i := range *st {
				if v := (*st)[i].Load(); v != nil {
					grown[i].Store(v)
				}
			}
		}
		st = &grown
		s.state.Store(st)
	}
	if v := (*st)[k.i].Load(); v != nil {
		return v.(*T)
	}
	v := new(T)
	(*st)[k.i].Store(v)
	return v
}

// Sink is where the session's stanzas go (the outermost wrapper).
func (s *Session) Sink() Sink {
	if k := s.sink.Load(); k != nil {
		return k.Sink
	}
	return nil
}
