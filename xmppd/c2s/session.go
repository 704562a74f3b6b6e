package c2s

import (
	"context"
	"encoding/xml"
	"errors"
	"sync/atomic"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// session is a client stream from authentication on: the connection, its
// stream (whose bounded write queue never blocks a sender: a client that
// does not read is closed), and its routing handle (rs), whose Sink it is.
// Its reader runs on the connection's goroutine; a writer goroutine runs
// only while there is something to write.
type session struct {
	c  *conn
	st *stream.Conn
	rs *router.Session // the reader's; other goroutines read carried
	// carried is rs for the callbacks that run on other goroutines (a
	// resumption replaces rs while the stream is up).
	carried atomic.Pointer[router.Session]
}

// newSession makes the session of an authenticated connection, not yet
// bound.
func newSession(c *conn, bare jid.JID) *session {
	sess := &session{c: c, st: c.st}
	sess.rs = router.NewSession(context.Background(), bare, sess)
	sess.carried.Store(sess.rs)
	r := c.svc.cfg.Router
	// Out of the table at once when it starts closing, so nothing more is
	// routed to a stream that is going away (messages fall back to other
	// resources or offline storage).
	// A session a module keeps across streams (XEP-0198) stays: its Sink
	// keeps what it is sent, and the module decides at the end.
	c.st.OnClose(func() {
		if rs := sess.carried.Load(); !rs.Kept() {
			r.Unregister(rs)
		}
	})
	c.st.OnOverflow(func() {
		c.svc.m.SlowClosed.Inc()
		c.svc.cfg.Log.Warn("closing a session that does not read", "jid", sess.carried.Load().String())
	})
	return sess
}

// Send implements router.Sink.
func (sess *session) Send(b []byte) bool { return sess.st.Send(b) }

// Close implements router.Sink.
func (sess *session) Close(cond, text string) { sess.st.Close(cond, text) }

// RateCounted is how many bytes the client has sent as its rate counted
// them; -1 without a rate.
func RateCounted(s *router.Session) int64 {
	sess, ok := s.Sink().(*session)
	if !ok || sess.c.rate == nil {
		return -1
	}
	return sess.c.rate.Counted()
}

// ping asks an idle client whether it is still there (XEP-0199).
func (sess *session) ping() bool {
	if sess.st.Closed() {
		return false
	}
	ping := &router.Stanza{Kind: router.KindIQ, Type: "get", ID: sess.rs.NextID("ping-"), From: sess.c.svc.cfg.Domain, To: sess.rs.JID(),
		Inner: wire.NewBuilder(nil).Element("ping", nsPing, "").Bytes()}
	sess.rs.Send(ping.Bytes()) // a stanza: through the session's wrappers, which count it
	return true
}

// serve runs the bound session until the stream ends, or until it parks:
// then it returns true and the session goes on (resume) on another
// goroutine when there is input.
func (sess *session) serve() (parked bool) {
	s := sess.c.svc
	s.m.Sessions.Inc()
	sess.st.Start()
	sess.c.wr.SetIdle(s.cfg.IdleTimeout, s.cfg.PingTimeout, sess.ping)
	// An active session keeps its goroutine; an idle one costs none.
	if s.cfg.ParkAfter > 0 {
		sess.c.wr.SetPark(s.cfg.ParkAfter, func() { sess.resume() })
	}
	return sess.read()
}

// resume reads on after the session was parked; the connection's place
// in the service's wait group goes with it.
func (sess *session) resume() {
	s := sess.c.svc
	parked := false
	defer func() {
		if !parked {
			s.wg.Done()
		}
	}()
	defer func() { // as run does for the first goroutine
		if r := recover(); r != nil {
			s.cfg.Log.Error("panic in session", "ip", sess.c.ip, "panic", r)
			sess.st.Transport().Close()
		}
	}()
	parked = sess.read()
}

// read runs the read loop until the stream ends (and then ends the
// session) or parks.
func (sess *session) read() (parked bool) {
	s := sess.c.svc
	err := sess.readLoop(sess.rs.Context())
	if errors.Is(err, wire.ErrParked) {
		return true
	}
	// No condition: the stream ended, or the network went away.
	sess.st.Close(stream.Condition(err))
	// Dropped: not closed by the client, nor ended by the server with an
	// error (a kick, a conflict, a shutdown); a silent client is dropped.
	cond := sess.st.EndCondition()
	dropped := !errors.Is(err, wire.ErrPeerClosed) && (cond == "" || cond == "connection-timeout")
	sess.st.Finish()
	s.m.Sessions.Dec()
	if !s.cfg.Router.StreamEnded(sess.rs, sess, dropped) {
		s.cfg.Router.Closed(sess.rs)
	}
	s.cfg.Log.Debug("stream ended", "jid", sess.rs.String(), "err", err, "dropped", dropped)
	return false
}

// readLoop reads stanzas until the stream ends or is closed. It waits
// for input in WaitInput, shallow, rather than deep inside the reading of
// an element: this is the stack of every idle session.
func (sess *session) readLoop(ctx context.Context) error {
	var cache addrCache
	for {
		if sess.st.Closed() {
			return nil
		}
		if err := sess.c.wr.WaitInput(); err != nil {
			return err
		}
		if err := sess.readStanza(ctx, &cache); err != nil {
			return err
		}
	}
}

// readStanza reads one stanza and hands it to the router; an error ends
// the stream.
func (sess *session) readStanza(ctx context.Context, cache *addrCache) error {
	c := sess.c
	r := c.svc.cfg.Router
	rs := sess.rs
	el, err := c.wr.ReadElement()
	if err != nil {
		return err
	}
	st, err := router.Parse(el, router.NSClient, func(raw string) router.Addr { return cache.resolve(raw, r.Normalize) })
	var se stanza.Error
	if errors.Is(err, router.ErrUnsupportedStanza) {
		if h := r.Hooks().Nonza(router.SessionBound, el.Name.Space); h != nil {
			return sess.nonza(ctx, h, el)
		}
		return stream.NewError("unsupported-stanza-type", "")
	}
	rs.CountIn() // a stanza, handled from here on (XEP-0198 h)
	switch {
	case errors.Is(err, router.ErrBadFrom):
		return stream.NewError("invalid-from", "")
	case errors.Is(err, router.ErrBadTo):
		if st.Type != "error" && st.Type != "result" {
			re := st.ErrorReply(router.NewError(stanza.Modify, stanza.JIDMalformed, ""))
			re.From = jid.JID{}
			rs.Send(re.Bytes())
		}
		return nil
	case errors.As(err, &se):
		// the address is not a valid number (item-not-found)
		if !st.From.Equal(jid.JID{}) && !st.From.Equal(rs.JID()) && !st.From.Equal(rs.Bare()) {
			return stream.NewError("invalid-from", "'from' must be your own address")
		}
		st.SetFrom(rs.JID(), rs.String())
		r.Bounce(st, se)
		return nil
	}
	if !st.From.Equal(jid.JID{}) && !st.From.Equal(rs.JID()) && !st.From.Equal(rs.Bare()) {
		return stream.NewError("invalid-from", "'from' must be your own address")
	}
	st.SetFrom(rs.JID(), rs.String())
	if st.Kind == router.KindIQ && st.To.Equal(jid.JID{}) && st.Payload == sessionPayload {
		// RFC 3921 session establishment, a no-op kept for old clients.
		rs.Send(st.Reply("result", nil).Bytes())
		return nil
	}
	r.FromSession(ctx, rs, st)
	return nil
}

// nonza runs a module's handler of a top-level element that is no stanza.
func (sess *session) nonza(ctx context.Context, h router.NonzaHandler, el wire.Element) error {
	reply, err := h(ctx, router.ConnInfo{Secure: sess.c.secure, WebSocket: sess.c.websocket, Session: sess.rs, Stream: sess}, el)
	if err != nil {
		return err
	}
	if len(reply) > 0 {
		sess.Send(reply) // no stanza: straight to the stream, uncounted
	}
	return nil
}

var sessionPayload = xml.Name{Space: nsSession, Local: "session"}

// addrCache remembers the addresses one session writes to, so that the
// routing path parses and normalises each only once. It belongs to the
// session's reader goroutine.
type addrCache struct {
	m map[string]router.Addr
}

const addrCacheSize = 256

func (c *addrCache) resolve(raw string, normalize func(jid.JID) (jid.JID, error)) router.Addr {
	if e, ok := c.m[raw]; ok {
		return e
	}
	e := router.ResolveAddr(raw, normalize)
	if c.m == nil || len(c.m) >= addrCacheSize {
		c.m = make(map[string]router.Addr, 16)
	}
	c.m[raw] = e
	return e
}
