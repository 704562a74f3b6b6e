package muc_test

import (
	"context"
	"encoding/xml"
	"sync"

	"mellium.im/xmpp/jid"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/router"
)

var (
	passMu    sync.Mutex
	passwords = map[string]string{} // server address + number → password
)

func (e *env) loginWith(n int, res string) *xmpptest.Client {
	e.t.Helper()
	c := e.connect(n, res)
	c.Available()
	return c
}

// connect logs a session of number n in, without presence.
func (e *env) connect(n int, res string) *xmpptest.Client {
	e.t.Helper()
	key := e.srv.Addr + number(n)
	passMu.Lock()
	pass, ok := passwords[key]
	if !ok {
		pass = e.srv.Account(e.t, number(n))
		passwords[key] = pass
	}
	passMu.Unlock()
	return xmpptest.Login(e.t, e.srv.Addr, number(n), pass, res)
}

// directed routes directed presence, as package mod/presence does
// (servertest loads only the least presence handling).
type directed struct{}

func (directed) Register(h *router.Hooks) error {
	r := h.Router()
	h.Hook(router.PresenceOut, router.Presences, 10, func(ctx context.Context, ev *router.Event) error {
		if ev.Stanza.To.Equal(jid.JID{}) {
			return nil
		}
		r.Route(ctx, ev.Stanza)
		return router.ErrHandled
	})
	return nil
}

func xmlName(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }
