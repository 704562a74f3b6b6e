package xmppd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
)

// Session is a bound client stream. Its reader runs on the connection's
// goroutine; one writer goroutine drains a queue bounded in stanzas and in
// bytes, so a client that does not read can never block anyone else nor
// hold much memory: when its queue is full it is closed.
type Session struct {
	srv        *Server
	nc         net.Conn
	dec        *conn
	full       jid.JID
	fullStr    string
	bare       jid.JID
	bareStr    string
	resource   string
	number     auth.Number
	generation int64

	out      outQueue
	kill     chan struct{}
	killOnce sync.Once
	cond     string // stream error to send when killed ("" = plain close)
	text     string
	done     chan struct{} // the final write (stream end) finished
	wmu      sync.Mutex    // held by whichever goroutine writes to nc

	presence   atomic.Pointer[Stanza]
	priority   atomic.Int32
	interested atomic.Bool
	carbons    atomic.Bool // XEP-0280 enabled; change with Server.setCarbons
	pingSeq    atomic.Uint64
}

func newSession(c *conn, full jid.JID) *Session {
	sess := &Session{
		srv:        c.srv,
		nc:         c.nc,
		dec:        c,
		full:       full,
		fullStr:    full.String(),
		bare:       full.Bare(),
		resource:   full.Resourcepart(),
		number:     c.number,
		generation: c.generation,
		out:        outQueue{max: c.srv.cfg.QueueSize},
		kill:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	sess.bareStr = sess.bare.String()
	return sess
}

// JID is the session's full JID.
func (sess *Session) JID() jid.JID { return sess.full }

// info returns a snapshot of the session's state.
func (sess *Session) info() SessionInfo {
	return SessionInfo{
		JID:        sess.full,
		Presence:   sess.presence.Load(),
		Priority:   int(sess.priority.Load()),
		Interested: sess.interested.Load(),
	}
}

// available reports whether the session sent available presence with a
// non-negative priority (RFC 6121 §8.5.2.1).
func (sess *Session) available() bool {
	return sess.presence.Load() != nil && sess.priority.Load() >= 0
}

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

// send queues b for the writer. It never blocks: a full queue closes the
// session.
func (sess *Session) send(b []byte) bool { return sess.enqueue(outItem{b: b}) }

func (sess *Session) enqueue(it outItem) bool {
	ok, full := sess.out.push(it, sess.srv.cfg.QueueBytes, &sess.srv.m.queuePeak)
	if full {
		sess.srv.m.SlowClosed.Inc()
		sess.srv.log.Warn("closing a session that does not read", "jid", sess.fullStr)
		sess.closeWith("policy-violation", "too much waiting for this client, which does not read")
	}
	return ok
}

// closeWith ends the session with a stream error (cond "" for a plain
// close). Queued stanzas are written first.
func (sess *Session) closeWith(cond, text string) {
	sess.killOnce.Do(func() {
		sess.cond, sess.text = cond, text
		close(sess.kill)
		// Out of the table at once, so nothing more is routed to a
		// stream that is going away (messages fall back to other
		// resources or offline storage).
		sess.srv.unregister(sess)
		sess.out.kill()
	})
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// write writes items (and tail) to the connection in one call. Hold wmu.
func (sess *Session) write(items []outItem, tail []byte, deadline time.Duration) error {
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
func (sess *Session) writeBurst() {
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
func (sess *Session) finishWrites() {
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
	sess.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
}

// ping asks an idle client whether it is still there (XEP-0199).
func (sess *Session) ping() bool {
	select {
	case <-sess.kill:
		return false
	default:
	}
	id := "ping-" + strconv.FormatUint(sess.pingSeq.Add(1), 10)
	sess.send([]byte(`<iq type="get" id="` + id + `" from="` + string(AppendEscaped(nil, sess.srv.domain.String())) + `" to="` + string(AppendEscaped(nil, sess.fullStr)) + `"><ping xmlns="urn:xmpp:ping"/></iq>`))
	return true
}

// serve runs the bound session until the stream ends.
func (sess *Session) serve() {
	s := sess.srv
	c := sess.dec
	s.m.Sessions.Inc()
	sess.out.open(func() { go sess.writeBurst() }, func() { go sess.finishWrites() })
	c.wr.SetIdle(s.cfg.IdleTimeout, s.cfg.PingTimeout, sess.ping)
	ctx := context.Background()
	err := sess.readLoop(ctx)
	// No condition: the stream ended, or the network went away.
	sess.closeWith(conditionOf(err))
	select {
	case <-sess.done:
	case <-time.After(s.cfg.WriteTimeout + 5*time.Second):
	}
	sess.nc.Close()
	s.unregister(sess)
	s.m.Sessions.Dec()
	if h := s.cfg.Mux.presence; h != nil {
		info := sess.info()
		sess.presence.Store(nil)
		func() {
			defer s.recoverHandler("SessionClosed")
			h.SessionClosed(ctx, info)
		}()
	}
	s.log.Debug("session ended", "jid", sess.fullStr, "err", err)
}

// readLoop reads stanzas until the stream ends or is killed.
func (sess *Session) readLoop(ctx context.Context) error {
	c := sess.dec
	var cache addrCache
	resolve := func(raw string) addrEntry { return cache.resolve(sess.srv, raw) }
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
		st, err := stanzaFrom(el, NSClient, resolve)
		var se stanza.Error
		switch {
		case errors.Is(err, errUnsupportedStanza):
			return serr("unsupported-stanza-type", "")
		case errors.Is(err, errBadFrom):
			return serr("invalid-from", "")
		case errors.Is(err, errBadTo):
			if st.Type != "error" && st.Type != "result" {
				r := st.ErrorReply(stanzaErr("modify", "jid-malformed", ""))
				r.From = jid.JID{}
				sess.send(r.Bytes())
			}
			continue
		case errors.As(err, &se):
			// the address is not a valid number (item-not-found)
			if !st.From.Equal(jid.JID{}) && !st.From.Equal(sess.full) && !st.From.Equal(sess.bare) {
				return serr("invalid-from", "'from' must be your own address")
			}
			st.From, st.fromStr = sess.full, sess.fullStr
			sess.srv.bounce(st, se)
			continue
		}
		if !st.From.Equal(jid.JID{}) && !st.From.Equal(sess.full) && !st.From.Equal(sess.bare) {
			return serr("invalid-from", "'from' must be your own address")
		}
		st.From, st.fromStr = sess.full, sess.fullStr
		if st.Kind == KindIQ && sess.answered(st) {
			continue
		}
		sess.srv.fromSession(ctx, sess, st)
	}
}

func (s *Server) recoverHandler(what string) {
	if r := recover(); r != nil {
		s.log.Error("panic in handler", "handler", what, "panic", r)
	}
}

// stanzaErr makes a stanza error with an optional text.
func stanzaErr(typ, cond, text string) stanza.Error {
	e := stanza.Error{Type: stanza.ErrorType(typ), Condition: stanza.Condition(cond)}
	if text != "" {
		e.Text = map[string]string{"": text}
	}
	return e
}
