// Package csi is XEP-0352 client state indication (urn:xmpp:csi:0):
// while a client says it is inactive (a phone in a pocket), the presence
// updates and chat states it would be sent are held back, only the latest
// presence per contact resource and the latest chat state per
// conversation, and sent when it says it is active again or just before
// anything else it is sent (a message with a body, an iq, a subscription
// request: whatever is not held is urgent). Nothing else is delayed, and
// nothing but superseded presence and chat states is dropped.
//
// The module holds what a session is sent by wrapping its Sink
// (router.Session.WrapSink) at the first <inactive/>.
package csi

import (
	"bytes"
	"context"
	"encoding/xml"
	"strings"
	"sync"
	"sync/atomic"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// NS is the namespace of XEP-0352.
const NS = "urn:xmpp:csi:0"

// Namespaces of what is held.
const (
	nsChatStates = "http://jabber.org/protocol/chatstates"
)

// MaxHeld bounds what one inactive session holds; beyond it everything
// held is sent.
const MaxHeld = 1000

// Module is client state indication.
type Module struct{}

// New returns the module.
func New() *Module { return &Module{} }

// Register offers the feature after authentication and handles
// <active/> and <inactive/> on bound sessions.
func (m *Module) Register(h *router.Hooks) error {
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte {
		return wire.NewBuilder(nil).Element("csi", NS, "").Bytes()
	})
	h.HandleNonza(router.SessionBound, NS, m.nonza)
	// A resumed stream (XEP-0198) starts active, as every stream does
	// (XEP-0352 §5.2: the state is not restored).
	h.OnSession(router.Resumed, 0, func(ctx context.Context, s *router.Session) {
		if h := slot.Get(s).h.Load(); h != nil {
			h.setInactive(false)
		}
	})
	return nil
}

// slot is a session's holder, made at its first <inactive/>.
var slot = router.NewKey[holderRef]()

type holderRef struct{ h atomic.Pointer[holder] }

func (m *Module) nonza(ctx context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	ref := slot.Get(c.Session)
	h := ref.h.Load()
	switch el.Name.Local {
	case "inactive":
		if h == nil {
			// Nonzas come from the session's one reader: no race here.
			h = &holder{}
			c.Session.WrapSink(func(inner router.Sink) router.Sink {
				h.inner = inner
				return h
			})
			ref.h.Store(h)
		}
		h.setInactive(true)
	case "active":
		if h != nil {
			h.setInactive(false)
		}
	default:
		return nil, stream.NewError("unsupported-stanza-type", "")
	}
	return nil, nil
}

// Inactive reports whether s's client said it is inactive (XEP-0357
// push treats such a session as not active).
func Inactive(s *router.Session) bool {
	h := slot.Get(s).h.Load()
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inactive
}

// holder is the Sink of a session that used CSI.
type holder struct {
	inner router.Sink // set before the holder is installed

	mu       sync.Mutex
	inactive bool
	keys     []string          // of held, in the order they were first held
	held     map[string][]byte // the latest stanza per key
}

func (h *holder) setInactive(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inactive = v
	if !v {
		h.flush()
	}
}

// flush sends what is held, in order (under h.mu).
func (h *holder) flush() {
	for _, k := range h.keys {
		h.inner.Send(h.held[k])
	}
	h.keys, h.held = nil, nil
}

// Send implements router.Sink. Under h.mu throughout, so that the client
// gets stanzas in the order they were sent.
func (h *holder) Send(b []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inactive {
		if key, ok := holdKey(b); ok {
			if _, seen := h.held[key]; !seen {
				if len(h.keys) >= MaxHeld {
					h.flush()
				}
				if h.held == nil {
					h.held = make(map[string][]byte)
				}
				h.keys = append(h.keys, key)
			}
			h.held[key] = b
			return true
		}
		h.flush() // before anything urgent
	}
	return h.inner.Send(b)
}

// Close implements router.Sink.
func (h *holder) Close(cond, text string) { h.inner.Close(cond, text) }

// stanzaView is what deciding whether to hold a stanza needs of it.
type stanzaView struct {
	XMLName  xml.Name
	From     string       `xml:"from,attr"`
	To       string       `xml:"to,attr"`
	Type     string       `xml:"type,attr"`
	Body     *struct{}    `xml:"body"`
	Received *carbonInner `xml:"urn:xmpp:carbons:2 received"`
	Sent     *carbonInner `xml:"urn:xmpp:carbons:2 sent"`
	Any      []anyChild   `xml:",any"`
}

type anyChild struct{ XMLName xml.Name }

type carbonInner struct {
	Forwarded struct {
		Message struct {
			From string     `xml:"from,attr"`
			To   string     `xml:"to,attr"`
			Body *struct{}  `xml:"jabber:client body"`
			Any  []anyChild `xml:",any"`
		} `xml:"jabber:client message"`
	} `xml:"urn:xmpp:forward:0 forwarded"`
}

// holdKey says whether b may be held, and under which key the latest
// one is kept: presence that is no subscription request or error, by its
// sender; a message that is only a chat state, by conversation (a carbon
// of one, by the conversation of the message it copies).
func holdKey(b []byte) (string, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("<presence")):
	case bytes.HasPrefix(b, []byte("<message")):
		if !bytes.Contains(b, []byte(nsChatStates)) || bytes.Contains(b, []byte("<body")) {
			return "", false
		}
	default:
		return "", false
	}
	var v stanzaView
	d := wire.NewDecoder(bytes.NewReader(b))
	d.DefaultSpace = router.NSClient
	if err := d.Decode(&v); err != nil {
		return "", false
	}
	if v.XMLName.Local == "presence" {
		switch v.Type {
		case "", "unavailable":
			return "p " + v.From, true
		}
		return "", false
	}
	if v.Body != nil || v.Type == "error" || v.Type == "groupchat" {
		return "", false
	}
	for _, c := range []*carbonInner{v.Received, v.Sent} {
		if c == nil {
			continue
		}
		m := c.Forwarded.Message
		if m.Body != nil || !onlyChatState(m.Any) {
			return "", false
		}
		return "c " + bare(m.From) + " " + bare(m.To), true
	}
	if !onlyChatState(v.Any) {
		return "", false
	}
	return "m " + bare(v.From), true
}

// onlyChatState reports whether the children are a chat state and
// nothing a client must see at once.
func onlyChatState(children []anyChild) bool {
	state := false
	for _, c := range children {
		switch c.XMLName.Space {
		case nsChatStates:
			state = true
		case "urn:xmpp:hints", "urn:xmpp:sid:0":
		default:
			return false
		}
	}
	return state
}

func bare(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}
