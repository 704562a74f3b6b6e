// Package sm is XEP-0198 stream management with resumption
// (urn:xmpp:sm:3): acks both ways, and a session whose stream drops kept
// (hibernating) for ResumeTimeout so that a new stream can take it over
// with its id and h and get exactly what it did not acknowledge, once,
// then what came meanwhile. A session that is not resumed in time, or
// that gets more than QueueLimit stanzas ahead of its acks, ends: each
// message it did not acknowledge goes to the router's Undelivered hooks
// (offline storage and the SMS notice), as a message to an offline
// receiver does; one that the offline module handed over stays in its
// store until the client confirms it, and is not stored twice.
//
// The module counts and keeps what a session is sent by wrapping its Sink
// (router.Session.WrapSink) and keeps the session across streams with
// router.Session.Keep and Hooks.OnStreamEnd; the router knows no XEP.
package sm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// NS is the namespace of XEP-0198 stream management.
const NS = "urn:xmpp:sm:3"

// Defaults of Module.
const (
	DefaultResumeTimeout = 5 * time.Minute
	DefaultQueueLimit    = 5000
	// The server asks for an ack (<r/>) after at most RequestAfter
	// unacknowledged stanzas or RequestEvery (SPEC.md).
	DefaultRequestAfter = 10
	DefaultRequestEvery = 10 * time.Second
	// What the server remembers of expired sessions (their last h), and
	// how many of them at most.
	expiredKeep = time.Hour
	expiredMax  = 10000
)

// Module is stream management. Set its fields, then load it.
type Module struct {
	// ResumeTimeout is how long a dropped stream's session waits to be
	// resumed (XMPPD_SM_RESUME_TIMEOUT); 0: DefaultResumeTimeout.
	ResumeTimeout time.Duration
	// QueueLimit bounds the unacknowledged stanzas of a session
	// (XMPPD_SM_QUEUE_LIMIT); 0: DefaultQueueLimit.
	QueueLimit int
	// RequestAfter and RequestEvery: when the server asks for an ack;
	// 0: the defaults.
	RequestAfter int
	RequestEvery time.Duration
	// Archived, when set, says that a message the session did not
	// acknowledge is in the archive that session's client reads
	// (XEP-0313): at the session's end it is then not stored offline,
	// and only the SMS notice rules run for it (Notice). Nil: never.
	Archived func(s *router.Session, st *router.Stanza) bool
	// Notice runs the SMS notice rules for a message as for an offline
	// receiver, without storing it (the offline module's notice-only
	// path). Required with Archived.
	Notice func(ctx context.Context, st *router.Stanza) error
	// Log takes what goes wrong; nil discards it.
	Log *slog.Logger
	// Remote, when set, asks the other nodes of a cluster for a session
	// this node does not know (HandOver there): found reports whether one
	// had it.
	Remote func(ctx context.Context, previd, owner string, h uint32) (ho Handover, found bool)
	// ShutdownGrace, when set (a node of a cluster), is how long a
	// stopping server keeps the resumable sessions whose streams it ends
	// (system-shutdown) hibernating, so that their clients resume them on
	// another node (HandOver) with nothing lost or sent twice; what is
	// not taken over by then is stored as at any session's end. 0: they
	// end with their streams, as on a single node, where no other node
	// could take them.
	ShutdownGrace time.Duration

	r *router.Router

	// holding: the accounts (bare JIDs) with a session being resumed here
	// from another node (Remote), and the messages that found no session
	// of theirs meanwhile (see holdForResume).
	holdMu  sync.Mutex
	holding map[string]*held

	mu      sync.Mutex
	live    map[*state]struct{} // every enabled session
	byID    map[string]*state   // the resumable ones, by id
	expired map[string]expiredSession
	order   []string // of expired, oldest first
	wake    chan struct{}
}

// expiredSession is what is left of a session that ended: enough to
// answer a late resumption with its h.
type expiredSession struct {
	owner string // bare JID: only its account learns h
	h     uint32
	at    time.Time
}

// slot is a session's state, made at <enable/>.
var slot = router.NewKey[stateRef]()

type stateRef struct {
	mu sync.Mutex
	st *state
}

func stateOf(s *router.Session) *state {
	ref := slot.Get(s)
	ref.mu.Lock()
	defer ref.mu.Unlock()
	return ref.st
}

// state is one managed session. It is the session's Sink (under any
// wrapper installed later): every stanza the session is sent is numbered
// and kept until the client acknowledges it.
type state struct {
	m    *Module
	sess *router.Session
	id   string // "" when not resumable

	mu sync.Mutex
	// inner is where stanzas go on (the stream, or a wrapper below this
	// one); stream is the stream's own Sink. Both nil while hibernating.
	inner, stream router.Sink
	unacked       [][]byte // stanzas acked+1 … sent
	sent, acked   uint32
	inBase        uint32    // the session's StanzasIn at <enable/>
	requested     uint32    // sent, at the last <r/>
	since         time.Time // when the oldest stanza sent since then went
	hibernating   bool
	deadline      time.Time // of the hibernation
	overflowed    bool
	ended         bool
	// handoff: the server is stopping and keeps this session for
	// another node (Module.ShutdownGrace).
	handoff bool
	// handedOver: another node took the session over (HandOver).
	handedOver bool
}

// Hibernating reports whether s is a managed session whose stream
// dropped and that waits to be resumed (XEP-0357 push counts it as
// having no active session).
func Hibernating(s *router.Session) bool {
	st := stateOf(s)
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.hibernating && !st.ended
}

// New returns the module with the defaults.
func New() *Module { return &Module{} }

func (m *Module) resumeTimeout() time.Duration {
	if m.ResumeTimeout > 0 {
		return m.ResumeTimeout
	}
	return DefaultResumeTimeout
}

func (m *Module) queueLimit() int {
	if m.QueueLimit > 0 {
		return m.QueueLimit
	}
	return DefaultQueueLimit
}

func (m *Module) requestAfter() uint32 {
	if m.RequestAfter > 0 {
		return uint32(m.RequestAfter)
	}
	return DefaultRequestAfter
}

func (m *Module) requestEvery() time.Duration {
	if m.RequestEvery > 0 {
		return m.RequestEvery
	}
	return DefaultRequestEvery
}

// tick is how often the sweeper looks at the sessions: a fraction of the
// shorter of its two times, at most a second.
func (m *Module) tick() time.Duration {
	return min(max(min(m.resumeTimeout(), m.requestEvery())/8, 5*time.Millisecond), time.Second)
}

func (m *Module) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Register offers stream management after authentication, handles its
// nonzas, keeps the resumable sessions whose streams drop, and ends them.
func (m *Module) Register(h *router.Hooks) error {
	m.r = h.Router()
	m.live = make(map[*state]struct{})
	m.byID = make(map[string]*state)
	m.expired = make(map[string]expiredSession)
	m.wake = make(chan struct{}, 1)
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte {
		return wire.NewBuilder(nil).Element("sm", NS, "").Bytes()
	})
	h.HandleNonza(router.PostAuth, NS, m.beforeBind)
	h.HandleNonza(router.SessionBound, NS, m.bound)
	// Bind2 (XEP-0386) may carry the <enable/> a client would send after
	// binding (XEP-0198 §"Inline"): the same, its <enabled/> in <bound/>.
	h.HandleInline(router.InlineBind, xml.Name{Space: NS, Local: "enable"}, m.bound)
	// SASL2 (XEP-0388) may carry <resume/>: authenticated and resumed in
	// one round trip, announced as <sm/> in the offer's <inline/>.
	h.HandleInline(router.InlineAuth, xml.Name{Space: NS, Local: "sm"}, m.inlineResume)
	h.OnStreamEnd(m.streamEnded)
	// Before offline storage (priority 0): a message that comes while
	// the session it is for moves here from another node waits for it.
	h.Hook(router.Undelivered, router.Messages, 50, m.holdForResume)
	h.OnSession(router.Closed, -100, m.closed)
	h.Go(m.sweep)
	return nil
}

var (
	requestAck = wire.NewBuilder(nil).Element("r", NS, "").Bytes()
)

// failed is a <failed/> with a condition and, when known, h.
func failed(cond string, h uint32, hKnown bool) []byte {
	b := wire.NewBuilder(nil)
	if hKnown {
		b.StartNS("failed", NS, "h", strconv.FormatUint(uint64(h), 10))
	} else {
		b.StartNS("failed", NS)
	}
	return b.Element(cond, router.NSStanzas, "").End().Bytes()
}

// beforeBind handles <resume/> (and refuses <enable/> before binding).
func (m *Module) beforeBind(ctx context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	if el.Name.Local != "resume" {
		return failed("unexpected-request", 0, false), nil
	}
	return m.resume(ctx, c, el)
}

// bound handles <enable/>, <r/> and <a/> on a bound session.
func (m *Module) bound(ctx context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	st := stateOf(c.Session)
	switch el.Name.Local {
	case "enable":
		if st != nil {
			return failed("unexpected-request", 0, false), nil
		}
		return m.enable(c, attr(el, "resume") == "true" || attr(el, "resume") == "1"), nil
	case "r":
		if st == nil {
			return failed("unexpected-request", 0, false), nil
		}
		// h acknowledges what the client sent: not before what is still
		// being stored for it (offline messages) is durable, within the
		// store's deadline (then the failures reach the client as errors).
		sctx, cancel := m.r.StoreContext(ctx)
		if err := c.Session.Settle(sctx); err != nil {
			m.log().Warn("sm: <a/> after the store's deadline", "err", err)
		}
		cancel()
		return wire.NewBuilder(nil).StartNS("a", NS, "h", strconv.FormatUint(uint64(st.handled()), 10)).End().Bytes(), nil
	case "a":
		if st == nil {
			return failed("unexpected-request", 0, false), nil
		}
		h, err := strconv.ParseUint(attr(el, "h"), 10, 32)
		if err != nil {
			return nil, stream.NewError("bad-format", "<a/> without a valid h")
		}
		if !st.ack(uint32(h)) {
			st.mu.Lock()
			m.log().Warn("sm: <a/> acknowledges more than was sent", "jid", c.Session.String(), "h", h, "acked", st.acked, "sent", st.sent, "unacked", len(st.unacked))
			st.mu.Unlock()
			return nil, stream.NewError("undefined-condition", "h acknowledges more stanzas than were sent")
		}
		return nil, nil
	case "resume":
		return failed("unexpected-request", 0, false), nil
	}
	return nil, stream.NewError("unsupported-stanza-type", "")
}

// enable starts managing c's session.
func (m *Module) enable(c router.ConnInfo, resumable bool) []byte {
	sess := c.Session
	st := &state{m: m, sess: sess, stream: c.Stream, inBase: sess.StanzasIn()}
	if resumable {
		st.id = newID()
	}
	ref := slot.Get(sess)
	ref.mu.Lock()
	ref.st = st
	ref.mu.Unlock()
	sess.WrapSink(func(inner router.Sink) router.Sink {
		st.mu.Lock()
		st.inner = inner
		st.mu.Unlock()
		return st
	})
	m.mu.Lock()
	m.live[st] = struct{}{}
	if resumable {
		m.byID[st.id] = st
	}
	m.mu.Unlock()
	b := wire.NewBuilder(nil)
	if !resumable {
		return b.StartNS("enabled", NS).End().Bytes()
	}
	sess.Keep()
	max := strconv.Itoa(int(m.resumeTimeout() / time.Second))
	return b.StartNS("enabled", NS, "id", st.id, "resume", "true", "max", max).End().Bytes()
}

// inlineResume is <resume/> inside a SASL2 <authenticate/>: on success
// nothing is bound (router.ErrNoBind) and <resumed/> goes into <success/>;
// a <failed/> goes there too, and the client's Bind2 request, if any,
// binds a new session (XEP-0198 and XEP-0388).
func (m *Module) inlineResume(ctx context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	if el.Name.Local != "resume" || c.Resume == nil {
		return nil, nil
	}
	took := false
	resume := c.Resume
	c.Resume = func(s *router.Session) { took = true; resume(s) }
	reply, err := m.resume(ctx, c, el)
	if err == nil && took {
		return reply, router.ErrNoBind
	}
	return reply, err
}

// resume hands the session of previd over to c's stream.
func (m *Module) resume(ctx context.Context, c router.ConnInfo, el wire.Element) ([]byte, error) {
	previd := attr(el, "previd")
	h64, err := strconv.ParseUint(attr(el, "h"), 10, 32)
	if err != nil || previd == "" {
		return failed("bad-request", 0, false), nil
	}
	h := uint32(h64)
	owner := c.Session.Bare().String()
	m.mu.Lock()
	st := m.byID[previd]
	gone, wasKnown := m.expired[previd]
	m.mu.Unlock()
	if st == nil && !wasKnown && m.Remote != nil {
		m.hold(owner)
		defer m.release(ctx, owner)
		if ho, found := m.Remote(ctx, previd, owner, h); found {
			return m.resumeHere(ctx, c, previd, ho)
		}
	}
	if st == nil || st.sess.Bare().String() != owner {
		known := wasKnown && gone.owner == owner
		return failed("item-not-found", gone.h, known), nil
	}
	st.mu.Lock()
	if st.ended || st.overflowed {
		hin := st.handled()
		st.mu.Unlock()
		return failed("item-not-found", hin, true), nil
	}
	n := h - st.acked
	if n > uint32(len(st.unacked)) {
		hin := st.handled()
		st.mu.Unlock()
		return failed("undefined-condition", hin, true), nil
	}
	st.dropAcked(h)
	old := st.stream
	st.inner, st.stream = c.Stream, c.Stream
	st.hibernating = false
	// What the client did not get goes first, in order, one element per
	// Send (a WebSocket frames each); new stanzas queue after them, under
	// st.mu. A backlog beyond the stream's queue bound closes the new
	// stream with policy-violation: the session then ends and its
	// backlog goes offline, nothing is lost.
	for _, b := range st.unacked {
		c.Stream.Send(b)
	}
	if len(st.unacked) > 0 {
		c.Stream.Send(requestAck)
		st.requested, st.since = st.sent, time.Time{}
	}
	hin := st.handled()
	st.mu.Unlock()
	if old != nil {
		// The old stream is still up (its TCP not yet seen dead): it ends,
		// and its end leaves the session to this stream.
		old.Close("conflict", "the session was resumed on another stream")
	}
	c.Resume(st.sess)
	m.r.Fire(ctx, router.Resumed, st.sess)
	return wire.NewBuilder(nil).StartNS("resumed", NS, "h", strconv.FormatUint(uint64(hin), 10), "previd", previd).End().Bytes(), nil
}

// streamEnded keeps a resumable session whose stream dropped.
func (m *Module) streamEnded(ctx context.Context, sess *router.Session, k router.Sink, dropped bool) bool {
	st := stateOf(sess)
	if st == nil {
		return false
	}
	st.mu.Lock()
	switch {
	case st.stream != k && !st.ended, st.handedOver:
		st.mu.Unlock()
		return true // another stream, here or on another node, carries it now
	case !dropped && !st.handoff || st.id == "" || st.ended || st.overflowed:
		st.mu.Unlock()
		return false
	}
	st.inner, st.stream = nil, nil
	st.hibernating = true
	st.deadline = time.Now().Add(m.resumeTimeout())
	if st.handoff {
		st.deadline = time.Now().Add(m.ShutdownGrace)
	}
	st.mu.Unlock()
	m.r.Fire(ctx, router.Hibernated, sess)
	return true
}

// closed ends a managed session: each message it did not acknowledge is
// handed to the Undelivered hooks (or, archived, to the notice rules).
func (m *Module) closed(ctx context.Context, sess *router.Session) {
	st := stateOf(sess)
	if st == nil {
		return
	}
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	st.ended = true
	items := st.unacked
	st.unacked = nil
	st.inner, st.stream = nil, nil
	hin := st.handled()
	st.mu.Unlock()
	m.mu.Lock()
	delete(m.live, st)
	if st.id != "" {
		delete(m.byID, st.id)
		m.remember(st.id, expiredSession{owner: sess.Bare().String(), h: hin, at: time.Now()})
	}
	m.mu.Unlock()
	for _, b := range items {
		m.undeliver(ctx, sess, b)
	}
}

// remember keeps the last h of an expired session (under m.mu).
func (m *Module) remember(id string, e expiredSession) {
	for len(m.order) >= expiredMax {
		delete(m.expired, m.order[0])
		m.order = m.order[1:]
	}
	m.expired[id] = e
	m.order = append(m.order, id)
}

// undeliver hands b, a stanza sent to sess and never acknowledged, to
// the Undelivered hooks when it is a message.
func (m *Module) undeliver(ctx context.Context, sess *router.Session, b []byte) {
	for _, st := range parse(b) {
		if st.Kind != router.KindMessage || m.fromOfflineStore(st) {
			continue
		}
		if m.Archived != nil && m.Notice != nil && m.Archived(sess, st) {
			if err := m.Notice(ctx, st); err != nil {
				m.log().Error("sm: notice of an archived message failed", "to", st.To.String(), "err", err)
			}
			continue
		}
		m.r.Undeliverable(ctx, st)
	}
}

// fromOfflineStore reports whether st is a stored message the offline
// module handed over (it carries that module's XEP-0203 delay from this
// domain): it stays stored until the client answered the ping after it,
// which proves the client processed it, so storing it again would only
// deliver it twice. (A sender who forges that delay only keeps its own
// message from being stored at a timeout.)
func (m *Module) fromOfflineStore(st *router.Stanza) bool {
	if !bytes.Contains(st.Inner, []byte("urn:xmpp:delay")) {
		return false
	}
	var v struct {
		Delay []struct {
			From string `xml:"from,attr"`
		} `xml:"urn:xmpp:delay delay"`
	}
	if err := xml.Unmarshal(st.Wrapped(), &v); err != nil {
		return false
	}
	for _, d := range v.Delay {
		if d.From == m.r.Domain() {
			return true
		}
	}
	return false
}

// streamHeader gives the stanzas kept as bytes their stream's context.
const streamHeader = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`

type bytesConn struct{ *bytes.Reader }

func (bytesConn) SetReadDeadline(time.Time) error { return nil }

// parse reads back the stanzas of b (one Send: one or more elements).
func parse(b []byte) []*router.Stanza {
	in := append([]byte(streamHeader), b...)
	w := wire.NewReader(bytesConn{bytes.NewReader(in)}, len(in)+1)
	if _, err := w.ReadHeader(); err != nil {
		return nil
	}
	var out []*router.Stanza
	for i := 0; i < 1000; i++ {
		el, err := w.ReadElement()
		if err != nil {
			break
		}
		if st, err := router.Parse(el, router.NSClient, nil); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// sweep ends the hibernations that expired and asks for acks that are
// due, until the router closes; then it ends every hibernation left, so
// that what waits in them is stored.
func (m *Module) sweep(ctx context.Context) {
	t := time.NewTicker(m.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.awaitHandoffs()
			m.expireAll(context.WithoutCancel(ctx))
			return
		case <-t.C:
		case <-m.wake:
		}
		m.sweepOnce()
	}
}

func (m *Module) states() []*state {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for len(m.order) > 0 {
		e, ok := m.expired[m.order[0]]
		if ok && now.Sub(e.at) < expiredKeep {
			break
		}
		delete(m.expired, m.order[0])
		m.order = m.order[1:]
	}
	list := make([]*state, 0, len(m.live))
	for st := range m.live {
		list = append(list, st)
	}
	return list
}

func (m *Module) sweepOnce() {
	now := time.Now()
	every := m.requestEvery() - m.tick()
	for _, st := range m.states() {
		st.mu.Lock()
		expire := st.hibernating && !st.ended && !now.Before(st.deadline)
		if !st.hibernating && st.inner != nil && st.sent != st.acked && st.requested != st.sent &&
			!st.since.IsZero() && now.Sub(st.since) >= every {
			st.inner.Send(requestAck)
			st.requested, st.since = st.sent, time.Time{}
		}
		st.mu.Unlock()
		if expire {
			m.r.Closed(st.sess)
		}
	}
}

// awaitHandoffs waits, at most ShutdownGrace, until no session kept for
// another node still hibernates here: each was resumed elsewhere
// (HandOver) or, its grace over, ended (sweepOnce).
func (m *Module) awaitHandoffs() {
	if m.ShutdownGrace <= 0 {
		return
	}
	t := time.NewTicker(m.tick())
	defer t.Stop()
	for end := time.Now().Add(m.ShutdownGrace); time.Now().Before(end); <-t.C {
		waiting := false
		for _, st := range m.states() {
			st.mu.Lock()
			waiting = waiting || st.handoff && st.hibernating && !st.ended
			st.mu.Unlock()
		}
		if !waiting {
			return
		}
		m.sweepOnce()
	}
}

// expireAll ends every hibernating session (the server is stopping).
func (m *Module) expireAll(ctx context.Context) {
	for _, st := range m.states() {
		st.mu.Lock()
		h := st.hibernating && !st.ended
		st.mu.Unlock()
		if h {
			m.r.Closed(st.sess)
		}
	}
}

// handled is the h of the stanzas the client sent (under st.mu or on the
// session's reader).
func (st *state) handled() uint32 { return st.sess.StanzasIn() - st.inBase }

// ack takes an acknowledgement of h; false when h is more than was sent.
func (st *state) ack(h uint32) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if h-st.acked > uint32(len(st.unacked)) {
		return false
	}
	st.dropAcked(h)
	return true
}

// dropAcked forgets the stanzas up to h (under st.mu; h checked).
func (st *state) dropAcked(h uint32) {
	n := int(h - st.acked)
	clear(st.unacked[:n])
	st.unacked = st.unacked[n:]
	if len(st.unacked) == 0 {
		st.unacked = nil // the array goes with the last one
	}
	st.acked = h
}

// Send implements router.Sink: b is numbered and kept, and goes on to the
// stream unless the session hibernates.
func (st *state) Send(b []byte) bool {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		// Out of the table since: what still arrives is undelivered.
		st.m.undeliver(context.Background(), st.sess, b)
		return true
	}
	st.unacked = append(st.unacked, b)
	st.sent++
	var closeStream router.Sink
	if len(st.unacked) > st.m.queueLimit() && !st.overflowed {
		// Closed with policy-violation; what it did not acknowledge is
		// undelivered, as at a timeout.
		st.overflowed = true
		closeStream = st.inner
		if st.hibernating {
			st.deadline = time.Time{}
			select {
			case st.m.wake <- struct{}{}:
			default:
			}
		}
	} else if st.inner != nil {
		// Under st.mu: the client numbers stanzas in the order it gets them.
		st.inner.Send(b)
		if st.since.IsZero() {
			st.since = time.Now()
		}
		if st.sent-st.requested >= st.m.requestAfter() {
			st.inner.Send(requestAck)
			st.requested, st.since = st.sent, time.Time{}
		}
	}
	st.mu.Unlock()
	if closeStream != nil {
		closeStream.Close("policy-violation", "too many unacknowledged stanzas")
	}
	return true
}

// Close implements router.Sink: the stream ends (a kick, a conflict, a
// shutdown); a hibernating session ends at once.
func (st *state) Close(cond, text string) {
	st.mu.Lock()
	inner := st.inner
	if cond == "system-shutdown" && st.m.ShutdownGrace > 0 && st.id != "" && !st.ended && !st.overflowed {
		// Kept for another node to resume (ShutdownGrace).
		st.handoff = true
		if end := time.Now().Add(st.m.ShutdownGrace); st.hibernating && end.Before(st.deadline) {
			st.deadline = end
		}
	} else if st.hibernating && !st.ended {
		st.deadline = time.Time{}
		select {
		case st.m.wake <- struct{}{}:
		default:
		}
	}
	st.mu.Unlock()
	if inner != nil {
		inner.Close(cond, text)
	}
}

func attr(el wire.Element, name string) string {
	for _, a := range el.Start.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

func newID() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// held is what waits for the sessions of one account being resumed here
// from other nodes.
type held struct {
	resuming int              // resumptions in flight
	msgs     []*router.Stanza // what came for the account meanwhile
}

// heldMax bounds the messages held for one account; past it they go on
// to offline storage.
const heldMax = 1000

// hold marks a resumption of a session of owner (a bare JID) from another
// node as under way. Until it is bound here, the node that had the
// session forwards what still comes for it, and the other nodes still
// route to that node or, once they heard it let the session go (or say
// goodbye at shutdown), to nobody: such a message would be stored offline
// and reach the client only at its next login, though its session goes on
// here. It waits instead (holdForResume), and release routes it again.
func (m *Module) hold(owner string) {
	m.holdMu.Lock()
	defer m.holdMu.Unlock()
	if m.holding == nil {
		m.holding = make(map[string]*held)
	}
	q := m.holding[owner]
	if q == nil {
		q = &held{}
		m.holding[owner] = q
	}
	q.resuming++
}

// release ends a resumption hold marked; the last one routes what was
// held again: to the resumed session, or (the resumption failed) on to
// offline storage. The messages were archived and stamped on their way:
// routed again, they are the same stanzas (router.Rerouted).
func (m *Module) release(ctx context.Context, owner string) {
	m.holdMu.Lock()
	q := m.holding[owner]
	var msgs []*router.Stanza
	if q != nil {
		if q.resuming--; q.resuming <= 0 {
			msgs = q.msgs
			delete(m.holding, owner)
		}
	}
	m.holdMu.Unlock()
	rctx := router.Rerouted(context.WithoutCancel(ctx))
	for _, st := range msgs {
		m.r.Route(rctx, st)
	}
}

// holdForResume is the Undelivered hook that holds a message for an
// account whose session is being resumed here (hold).
func (m *Module) holdForResume(_ context.Context, ev *router.Event) error {
	bare := ev.Stanza.ToBare()
	m.holdMu.Lock()
	defer m.holdMu.Unlock()
	q := m.holding[bare]
	if q == nil || len(q.msgs) >= heldMax {
		return nil
	}
	q.msgs = append(q.msgs, ev.Stanza.Clone())
	return router.ErrHandled
}
