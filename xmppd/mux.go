package xmppd

import (
	"context"
	"encoding/xml"

	"mellium.im/xmpp/jid"
)

// Scope says which addressee an IQ handler serves.
type Scope uint8

// Scopes of IQ handlers.
const (
	// ScopeServer: iq addressed to the server's domain.
	ScopeServer Scope = 1 << iota
	// ScopeAccount: iq addressed to the bare JID of a local number, or
	// with no 'to' (then To is set to the sender's bare JID and ToAbsent
	// is true). The number may have no account: handlers must answer
	// another user the same way for a latent number as for an account
	// (SPEC.md: whether a number has an account is not visible). Handlers
	// that change data must check that To is the sender's own account
	// (iq.To.Equal(iq.From.Bare())) and answer forbidden otherwise.
	ScopeAccount
)

// IQHandler answers an iq of type get or set. It returns the child element
// of the result (nil for an empty result), or an error: a stanza.Error is
// sent as it is, any other error is logged and answered with
// internal-server-error. The core builds and sends the reply.
type IQHandler func(ctx context.Context, iq *Stanza) (result []byte, err error)

// PresenceHandler owns presence (RFC 6121 §3–4): the core hands it every
// presence stanza and does nothing else with them.
type PresenceHandler interface {
	// OutboundPresence gets presence sent by a local session (From is the
	// session's full JID, To as the client wrote it, normalised).
	OutboundPresence(ctx context.Context, p *Stanza)
	// InboundPresence gets presence addressed to a local account or one of
	// its resources, from anywhere (another local account, a remote server).
	InboundPresence(ctx context.Context, p *Stanza)
	// SessionClosed is called after a session ended; info is its last state.
	SessionClosed(ctx context.Context, info SessionInfo)
}

// Filter sees every stanza that a local account sends (outbound) and every
// stanza about to be delivered to a local account (inbound). It returns
// drop=true to stop it; a non-nil err (a stanza.Error) is sent back to the
// sender when the stanza was not itself an error. Filters run on the hot
// path: they must not touch the store.
type Filter func(ctx context.Context, s *Stanza, inbound bool) (drop bool, err error)

// OfflineHandler stores a message for a local account that has no
// available resource. A nil error means stored; a stanza.Error is returned
// to the sender.
type OfflineHandler func(ctx context.Context, m *Stanza) error

// RemoteHandler takes every stanza addressed to another domain (s2s). It
// must not block on the network: queue, and answer errors to s.From
// later through the Router.
type RemoteHandler func(ctx context.Context, s *Stanza)

// AvailableHook is called when a session becomes available (its initial
// presence was recorded with SetPresence) with non-negative priority.
type AvailableHook func(ctx context.Context, full jid.JID)

// SessionInfo is a snapshot of one bound session.
type SessionInfo struct {
	JID jid.JID
	// Presence is the last available presence the session broadcast
	// (nil when it has not sent initial presence or went unavailable).
	Presence   *Stanza
	Priority   int
	Interested bool // it has requested the roster (RFC 6121 §2.1.6)
}

// Available reports whether the session has sent available presence.
func (i SessionInfo) Available() bool { return i.Presence != nil }

// Router is what modules use to reach sessions and send stanzas.
type Router interface {
	// Domain is the local XMPP domain.
	Domain() string
	// Route delivers s by the rules of RFC 6121 §8; s.From must be set.
	// Errors are sent back to s.From as stanzas, never returned.
	Route(ctx context.Context, s *Stanza)
	// Deliver writes s to exactly one local session; false when it is gone.
	// No filters run.
	Deliver(full jid.JID, s *Stanza) bool
	// Sessions returns the bound sessions of the local account bare.
	Sessions(bare jid.JID) []SessionInfo
	// SetPresence records the presence a session broadcast: an available
	// presence (priority read from it), or nil for unavailable.
	SetPresence(full jid.JID, p *Stanza)
	// SetInterested marks the session as having requested the roster.
	SetInterested(full jid.JID)
	// IsLocal reports whether the bare JID is a stored account here.
	IsLocal(ctx context.Context, bare jid.JID) (bool, error)
	// Normalize returns the canonical form of j: for the local domain the
	// localpart is parsed as a phone number in any accepted form; other
	// domains are returned unchanged. An error is a stanza.Error
	// (item-not-found for a localpart that is not a valid number,
	// jid-malformed).
	Normalize(j jid.JID) (jid.JID, error)
}

type iqKey struct {
	scope Scope
	name  xml.Name
}

// Mux is where feature modules register, the way http.Handlers register
// with an http.ServeMux. Register everything before the server starts.
type Mux struct {
	iq        map[iqKey]IQHandler
	presence  PresenceHandler
	filters   []Filter
	offline   OfflineHandler
	available []AvailableHook
	features  map[Scope][]string
	stream    [][]byte
	remote    RemoteHandler
}

// HandleRemote sets the handler for stanzas to other domains (federation).
// Without one they are answered remote-server-not-found.
func (m *Mux) HandleRemote(h RemoteHandler) { m.remote = h }

// AddStreamFeature adds an element to the stream features offered after
// authentication (e.g. the caps element, XEP-0115 §6.3).
func (m *Mux) AddStreamFeature(el []byte) { m.stream = append(m.stream, el) }

// HandleIQ registers h for iq get/set with the payload name in scope
// (ScopeServer|ScopeAccount registers both). The namespace is also
// advertised as a disco#info feature of that scope.
func (m *Mux) HandleIQ(scope Scope, payload xml.Name, h IQHandler) {
	if m.iq == nil {
		m.iq = make(map[iqKey]IQHandler)
	}
	for _, sc := range []Scope{ScopeServer, ScopeAccount} {
		if scope&sc != 0 {
			m.iq[iqKey{sc, payload}] = h
			m.AddFeature(sc, payload.Space)
		}
	}
}

// AddFeature advertises a disco#info feature var in scope.
func (m *Mux) AddFeature(scope Scope, feature string) {
	if m.features == nil {
		m.features = make(map[Scope][]string)
	}
	for _, sc := range []Scope{ScopeServer, ScopeAccount} {
		if scope&sc == 0 {
			continue
		}
		dup := false
		for _, f := range m.features[sc] {
			dup = dup || f == feature
		}
		if !dup {
			m.features[sc] = append(m.features[sc], feature)
		}
	}
}

// Features returns the disco#info features registered for scope.
func (m *Mux) Features(scope Scope) []string { return m.features[scope] }

// HandlePresence sets the presence handler.
func (m *Mux) HandlePresence(h PresenceHandler) { m.presence = h }

// AddFilter adds a filter.
func (m *Mux) AddFilter(f Filter) { m.filters = append(m.filters, f) }

// HandleOffline sets the offline handler.
func (m *Mux) HandleOffline(h OfflineHandler) { m.offline = h }

// OnAvailable adds a hook run when a session becomes available.
func (m *Mux) OnAvailable(h AvailableHook) { m.available = append(m.available, h) }

// iqHandler returns the handler for an iq, or nil.
func (m *Mux) iqHandler(scope Scope, payload xml.Name) IQHandler {
	return m.iq[iqKey{scope, payload}]
}
