package xmppd

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// session is a client stream from authentication on: the connection, its
// write queue, and its routing handle (rs), whose Sink it is. Its reader
// runs on the connection's goroutine; a writer goroutine drains a queue
// bounded in stanzas and in bytes, so a client that does not read can
// never block anyone else nor hold much memory: when its queue is full it
// is closed.
type session struct {
	srv        *Server
	rs         *router.Session
	nc         net.Conn
	dec        *conn
	number     auth.Number
	generation int64

	out      outQueue
	kill     chan struct{}
	killOnce sync.Once
	cond     string // stream error to send when killed ("" = plain close)
	text     string
	done     chan struct{} // the final write (stream end) finished
	wmu      sync.Mutex    // held by whichever goroutine writes to nc
}

// newSession makes the session of an authenticated connection, not yet
// bound.
func newSession(c *conn, bare jid.JID) *session {
	sess := &session{
		srv:        c.srv,
		nc:         c.nc,
		dec:        c,
		number:     c.number,
		generation: c.generation,
		out:        outQueue{max: c.srv.cfg.QueueSize},
		kill:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	sess.rs = router.NewSession(context.Background(), bare, sess)
	return sess
}

// Send implements router.Sink.
func (sess *session) Send(b []byte) bool { return sess.enqueue(outItem{b: b}) }

// Close implements router.Sink.
func (sess *session) Close(cond, text string) { sess.closeWith(cond, text) }

// outItem is one queued write.
type outItem struct {
	b []byte
}

// outQueue is a session's bounded write queue. It holds no memory while
// the session is idle (a channel of QueueSize slots would cost every idle
// session tens of KiB), and no goroutine either: a writer goroutine runs
// only while there is something to write, and takes everything queued in
// one swap. Its stack was, with the reader's, most of an idle session's
// memory.
type outQueue struct {
	mu        sync.Mutex
	items     []outItem
	spare     []outItem
	max       int
	bytes     int // queued and not yet written, those being written included
	closed    bool
	ready     bool   // writers may run (after the bind result was written)
	writing   bool   // a writer goroutine is running or about to
	killed    bool   // the session is closing
	finishing bool   // the final writer was started
	write     func() // starts a writer goroutine
	finish    func() // starts the final writer
}

// push adds it; false when the queue is full (QueueSize stanzas, or
// maxBytes) or closed. peak learns the most bytes held. (Both are
// arguments, not fields, to keep idle sessions small.)
func (q *outQueue) push(it outItem, maxBytes int, peak *atomic.Int64) (ok, full bool) {
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return false, false
	case len(q.items) >= q.max, q.bytes >= maxBytes:
		// Bytes are checked before adding: a queue holds at most
		// maxBytes plus one stanza.
		q.mu.Unlock()
		return false, true
	}
	q.items = append(q.items, it)
	q.bytes += len(it.b)
	notePeak(peak, int64(q.bytes))
	start := q.ready && !q.writing && !q.killed
	if start {
		q.writing = true
	}
	q.mu.Unlock()
	if start {
		q.write()
	}
	return true, false
}

// notePeak raises peak to n if n is more. The common case, no new peak,
// only reads it.
func notePeak(peak *atomic.Int64, n int64) {
	for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
	}
}

// open lets writers run from now on, starting them for anything queued
// meanwhile (and the final writer if the session was closed meanwhile).
func (q *outQueue) open(write, finish func()) {
	q.mu.Lock()
	q.ready, q.write, q.finish = true, write, finish
	startWrite := len(q.items) > 0 && !q.writing && !q.killed
	if startWrite {
		q.writing = true
	}
	startFinish := q.killed && !q.finishing
	if startFinish {
		q.finishing = true
	}
	q.mu.Unlock()
	if startWrite {
		write()
	}
	if startFinish {
		finish()
	}
}

// kill marks the session closing and starts the final writer once writers
// may run.
func (q *outQueue) kill() {
	q.mu.Lock()
	q.killed = true
	start := q.ready && !q.finishing
	if start {
		q.finishing = true
	}
	finish := q.finish
	q.mu.Unlock()
	if start {
		finish()
	}
}

// take returns everything queued (owned by the caller until the next
// take); nil when there is nothing, and then the calling writer must end.
func (q *outQueue) take() []outItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || q.killed {
		q.writing = false
		return nil
	}
	items := q.items
	q.items = q.spare[:0]
	q.spare = nil
	return items
}

// wrote takes n written bytes off the count.
func (q *outQueue) wrote(n int) {
	q.mu.Lock()
	q.bytes -= n
	q.mu.Unlock()
}

// give hands a slice back for reuse; big ones are dropped, so a burst
// does not pin memory.
func (q *outQueue) give(items []outItem) {
	if cap(items) > 256 {
		return
	}
	clear(items)
	q.mu.Lock()
	if q.spare == nil {
		q.spare = items[:0]
	}
	q.mu.Unlock()
}

// close refuses further items and returns what was still queued.
func (q *outQueue) close() []outItem {
	q.mu.Lock()
	q.closed = true
	items := q.items
	q.items = nil
	q.mu.Unlock()
	return items
}

func (sess *session) enqueue(it outItem) bool {
	ok, full := sess.out.push(it, sess.srv.cfg.QueueBytes, &sess.srv.m.queuePeak)
	if full {
		sess.srv.m.SlowClosed.Inc()
		sess.srv.log.Warn("closing a session that does not read", "jid", sess.rs.String())
		sess.closeWith("policy-violation", "too much waiting for this client, which does not read")
	}
	return ok
}

// closeWith ends the session with a stream error (cond "" for a plain
// close). Queued stanzas are written first.
func (sess *session) closeWith(cond, text string) {
	sess.killOnce.Do(func() {
		sess.cond, sess.text = cond, text
		close(sess.kill)
		// Out of the table at once, so nothing more is routed to a
		// stream that is going away (messages fall back to other
		// resources or offline storage).
		sess.srv.router.Unregister(sess.rs)
		sess.out.kill()
	})
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// write writes items (and tail) to the connection in one call. Hold wmu.
func (sess *session) write(items []outItem, tail []byte, deadline time.Duration) error {
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, it := range items {
		buf = append(buf, it.b...)
	}
	buf = append(buf, tail...)
	var err error
	if len(buf) > 0 {
		sess.nc.SetWriteDeadline(time.Now().Add(deadline))
		_, err = sess.nc.Write(buf)
	}
	if cap(buf) <= 256<<10 {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	return err
}

// writeBurst runs while the queue has something: it writes whatever has
// queued up, at most about 64 KiB per call so that the queue's byte count
// follows what the connection took, and ends when the queue is empty or
// the session closes (the final writer then takes the rest).
func (sess *session) writeBurst() {
	sess.wmu.Lock()
	defer sess.wmu.Unlock()
	timeout := sess.srv.cfg.WriteTimeout
	for {
		items := sess.out.take()
		if items == nil {
			return
		}
		var err error
		for rest := items; len(rest) > 0 && err == nil; {
			n, size := 0, 0
			for n < len(rest) && (n == 0 || size+len(rest[n].b) <= 64<<10) {
				size += len(rest[n].b)
				n++
			}
			if err = sess.write(rest[:n], nil, timeout); err == nil {
				sess.out.wrote(size)
			}
			rest = rest[n:]
		}
		sess.out.give(items)
		if err != nil {
			sess.nc.Close()
			sess.out.close()
			sess.closeWith("", "")
			return
		}
	}
}

// finishWrites writes what is still queued and the end of the stream (the
// stream error, if any), then lets the reader stop.
func (sess *session) finishWrites() {
	defer close(sess.done)
	sess.wmu.Lock()
	defer sess.wmu.Unlock()
	items := sess.out.close()
	var tail []byte
	if sess.cond != "" {
		sess.srv.m.StreamErrors.WithLabelValues(sess.cond).Inc()
		tail = appendStreamError(nil, sess.cond, sess.text)
	} else {
		tail = []byte("</stream:stream>")
	}
	sess.write(items, tail, 5*time.Second)
	if tc, ok := sess.nc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	// Give the reader a moment to see the peer's </stream:stream>, then
	// make sure it stops.
	sess.dec.wr.Stop(2 * time.Second)
}

// ping asks an idle client whether it is still there (XEP-0199).
func (sess *session) ping() bool {
	select {
	case <-sess.kill:
		return false
	default:
	}
	ping := &router.Stanza{Kind: router.KindIQ, Type: "get", ID: sess.rs.NextID("ping-"), From: sess.srv.domain, To: sess.rs.JID(),
		Inner: wire.NewBuilder(nil).Element("ping", nsPing, "").Bytes()}
	sess.Send(ping.Bytes())
	return true
}

// serve runs the bound session until the stream ends.
func (sess *session) serve() {
	s := sess.srv
	c := sess.dec
	s.m.Sessions.Inc()
	sess.out.open(func() { go sess.writeBurst() }, func() { go sess.finishWrites() })
	c.wr.SetIdle(s.cfg.IdleTimeout, s.cfg.PingTimeout, sess.ping)
	err := sess.readLoop(sess.rs.Context())
	// No condition: the stream ended, or the network went away.
	sess.closeWith(conditionOf(err))
	select {
	case <-sess.done:
	case <-time.After(s.cfg.WriteTimeout + 5*time.Second):
	}
	sess.nc.Close()
	s.m.Sessions.Dec()
	s.router.Closed(sess.rs)
	s.log.Debug("session ended", "jid", sess.rs.String(), "err", err)
}

// readLoop reads stanzas until the stream ends or is killed.
func (sess *session) readLoop(ctx context.Context) error {
	c := sess.dec
	r := sess.srv.router
	rs := sess.rs
	var cache addrCache
	resolve := func(raw string) router.Addr { return cache.resolve(raw, r.Normalize) }
	for {
		select {
		case <-sess.kill:
			return nil
		default:
		}
		el, err := c.wr.ReadElement()
		if err != nil {
			return err
		}
		st, err := router.Parse(el, NSClient, resolve)
		var se stanza.Error
		switch {
		case errors.Is(err, router.ErrUnsupportedStanza):
			if h := r.Hooks().Nonza(router.SessionBound, el.Name.Space); h != nil {
				if err := sess.nonza(ctx, h, el); err != nil {
					return err
				}
				continue
			}
			return serr("unsupported-stanza-type", "")
		case errors.Is(err, router.ErrBadFrom):
			return serr("invalid-from", "")
		case errors.Is(err, router.ErrBadTo):
			if st.Type != "error" && st.Type != "result" {
				re := st.ErrorReply(router.NewError(stanza.Modify, stanza.JIDMalformed, ""))
				re.From = jid.JID{}
				sess.Send(re.Bytes())
			}
			continue
		case errors.As(err, &se):
			// the address is not a valid number (item-not-found)
			if !st.From.Equal(jid.JID{}) && !st.From.Equal(rs.JID()) && !st.From.Equal(rs.Bare()) {
				return serr("invalid-from", "'from' must be your own address")
			}
			st.SetFrom(rs.JID(), rs.String())
			r.Bounce(st, se)
			continue
		}
		if !st.From.Equal(jid.JID{}) && !st.From.Equal(rs.JID()) && !st.From.Equal(rs.Bare()) {
			return serr("invalid-from", "'from' must be your own address")
		}
		st.SetFrom(rs.JID(), rs.String())
		if st.Kind == router.KindIQ && st.To.Equal(jid.JID{}) && st.Payload == sessionPayload {
			// RFC 3921 session establishment, a no-op kept for old clients.
			sess.Send(st.Reply("result", nil).Bytes())
			continue
		}
		r.FromSession(ctx, rs, st)
	}
}

// nonza runs a module's handler of a top-level element that is no stanza.
func (sess *session) nonza(ctx context.Context, h router.NonzaHandler, el wire.Element) error {
	reply, err := h(ctx, router.ConnInfo{Secure: sess.dec.secure, WebSocket: sess.dec.websocket, Session: sess.rs}, el)
	if err != nil {
		return err
	}
	if len(reply) > 0 {
		sess.Send(reply)
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

// stanzaErr makes a stanza error with an optional text.
func stanzaErr(typ, cond, text string) stanza.Error {
	return router.NewError(stanza.ErrorType(typ), stanza.Condition(cond), text)
}
