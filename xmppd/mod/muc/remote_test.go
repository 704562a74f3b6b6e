package muc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// remoteLink stands in for federation: what the router sends to other
// domains is collected.
type remoteLink struct {
	mu  sync.Mutex
	out []*router.Stanza
}

func (l *remoteLink) send(_ context.Context, st *router.Stanza) {
	l.mu.Lock()
	l.out = append(l.out, st)
	l.mu.Unlock()
}

// wait returns the first stanza sent out that f accepts, polling until a
// deadline.
func (l *remoteLink) wait(t *testing.T, what string, f func(*router.Stanza) bool) *router.Stanza {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, st := range l.out {
			if f(st) {
				l.mu.Unlock()
				return st
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("never sent to the remote server: %s", what)
	return nil
}

// A user of another server joins a room here, talks, and hears the room,
// through the router's remote route (s2s in the daemon).
func TestRemoteOccupant(t *testing.T) {
	e := start(t, newMemStore(), nil)
	link := &remoteLink{}
	r := e.srv.Router()
	r.SetRemote(link.send)
	alice, _ := setup(t, e, nil)
	remote := jid.MustParse("juliet@remote.example/balcony")
	nick := jid.MustParse(room + "/juliet")
	r.RouteInbound(context.Background(), &router.Stanza{Kind: router.KindPresence, From: remote, To: nick,
		Inner: []byte(`<x xmlns="http://jabber.org/protocol/muc"/>`)})
	self := link.wait(t, "self-presence", func(st *router.Stanza) bool {
		return st.Kind == router.KindPresence && st.To.Equal(remote) && strings.Contains(string(st.Inner), `code="110"`)
	})
	if !self.From.Equal(nick) {
		t.Fatalf("self-presence from %s", self.From)
	}
	alice.Expect("juliet's presence", isPresenceFrom(room+"/juliet"))
	r.RouteInbound(context.Background(), &router.Stanza{Kind: router.KindMessage, Type: "groupchat", From: remote, To: jid.MustParse(room),
		Inner: []byte(`<body>from afar</body>`)})
	expectBody(t, alice, room+"/juliet", "from afar")
	groupchat(alice, "welcome")
	link.wait(t, "alice's message", func(st *router.Stanza) bool {
		return st.Kind == router.KindMessage && st.To.Equal(remote) && strings.Contains(string(st.Inner), "welcome")
	})
	// Remote users do not make rooms here.
	r.RouteInbound(context.Background(), &router.Stanza{Kind: router.KindPresence, From: remote, To: jid.MustParse("new@groups.localhost/juliet")})
	link.wait(t, "refusal", func(st *router.Stanza) bool {
		return st.Type == "error" && strings.Contains(string(st.Inner), "not-allowed")
	})
}
