package router_test

import (
	"context"
	"sync/atomic"
	"testing"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// TestRemoteSession: a mirror of a session on another node is routed to
// like a local one (a message to the bare JID picks the highest priority
// over both), fires no event when added, replaced or removed, replaces a
// session of the same full JID without closing it, and is not among All
// (a node's shutdown closes only its own). PresenceSet fires at every
// presence a local session sets.
func TestRemoteSession(t *testing.T) {
	var events, presenceSet atomic.Int32
	r := newRouter(t, router.ModuleFunc(func(h *router.Hooks) error {
		for _, e := range []router.SessionEvent{router.Bound, router.Available, router.Unavailable, router.Closed} {
			h.OnSession(e, 0, func(context.Context, *router.Session) { events.Add(1) })
		}
		h.OnSession(router.PresenceSet, 0, func(context.Context, *router.Session) { presenceSet.Add(1) })
		return nil
	}))
	local, localSink := bind(t, r, full(alice, "here"))
	ctx := context.Background()
	r.SetPresence(ctx, local, presence(full(alice, "here"), "<priority>1</priority>"))
	r.SetPresence(ctx, local, presence(full(alice, "here"), "<priority>1</priority><show>away</show>"))
	if presenceSet.Load() != 2 {
		t.Fatalf("PresenceSet fired %d times, want 2", presenceSet.Load())
	}
	before := events.Load()

	remoteSink := &sink{}
	remote := router.NewRemoteSession(ctx, full(alice, "there"), remoteSink)
	r.AddRemote(remote)
	remote.SetPresence(presence(full(alice, "there"), "<priority>5</priority>"))
	if !remote.Remote() || local.Remote() {
		t.Fatal("Remote() wrong")
	}
	if got := r.Sessions(alice); len(got) != 2 {
		t.Fatalf("Sessions = %d, want 2", len(got))
	}
	for _, s := range r.All() {
		if s.Remote() {
			t.Fatal("All returned a remote session")
		}
	}
	// normal message to the bare JID: the highest priority, on the other node.
	bobSess, _ := bind(t, r, full(bob, "b"))
	m := message(alice, "m1")
	m.Type = "normal"
	send(r, bobSess, m)
	if len(remoteSink.take()) != 1 || len(localSink.take()) != 0 {
		t.Fatal("the message did not go to the remote session of highest priority")
	}
	// A newer mirror with the local session's resource takes its place,
	// without closing it (its own node does).
	again := router.NewRemoteSession(ctx, full(alice, "here"), &sink{})
	r.AddRemote(again)
	if r.Session(full(alice, "here")) != again || localSink.closed != "" {
		t.Fatal("AddRemote did not replace the session quietly")
	}
	r.RemoveRemote(remote)
	r.RemoveRemote(again)
	if len(r.Sessions(alice)) != 0 || remote.Context().Err() == nil {
		t.Fatal("RemoveRemote left the mirror")
	}
	if events.Load() != before+1 { // bob's Bound only
		t.Fatalf("mirrors fired %d events", events.Load()-before-1)
	}
}

func presence(from jid.JID, inner string) *router.Stanza {
	return &router.Stanza{Kind: router.KindPresence, From: from, Inner: []byte(inner)}
}
