package sm

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Resumption on another node of a cluster: the client reconnects to any
// node (behind a load balancer) with the previd of a session that
// hibernated on another one. That node is asked for it (Module.Remote);
// the one that has it gives it up (HandOver): the session leaves its table
// quietly (no unavailable presence: it goes on), and the node the client
// is on binds it again with the same full JID, presence, counters and the
// stanzas the client did not acknowledge, which it sends first.

// Handover is a hibernating resumable session given up to another node.
type Handover struct {
	// Failed, when set, is the <failed/> to answer: the session exists
	// here but cannot be resumed (the rest is then empty).
	Failed []byte `json:",omitempty"`
	// Full is the session's full JID.
	Full string `json:",omitempty"`
	// H is how many stanzas the session handled from its client.
	H uint32 `json:",omitempty"`
	// Acked is how many stanzas the client acknowledged (its h); Unacked
	// are the ones sent after them, in order.
	Acked   uint32   `json:",omitempty"`
	Unacked [][]byte `json:",omitempty"`
	// Available, Presence and Lang are its last presence.
	Available bool   `json:",omitempty"`
	Presence  []byte `json:",omitempty"`
	Lang      string `json:",omitempty"`
}

// Marshal encodes a Handover for another node.
func (h Handover) Marshal() []byte {
	b, _ := json.Marshal(h) // only strings, numbers and bytes
	return b
}

// ParseHandover decodes what Marshal made.
func ParseHandover(b []byte) (Handover, error) {
	var h Handover
	err := json.Unmarshal(b, &h)
	return h, err
}

// HandOver gives up the hibernating resumable session previd of the
// account owner (a bare JID) whose client handled h stanzas, for another
// node to resume; false when there is no such session here. A session
// whose stream is still up is not handed over (its client gets
// item-not-found and logs in again; nothing is lost).
//
// moving, when set, is called once the session is found fit to go and
// before its queue is taken, with its full JID and last presence (nil:
// unavailable): it puts in the routing table what forwards to the other
// node (cluster.Moved). What is routed to the session until then is in
// the queue handed over; what comes after goes on to the other node, not
// to offline storage here.
func (m *Module) HandOver(previd, owner string, h uint32, moving func(full jid.JID, presence *router.Stanza)) (Handover, bool) {
	m.mu.Lock()
	st := m.byID[previd]
	m.mu.Unlock()
	if st == nil || st.sess.Bare().String() != owner {
		return Handover{}, false
	}
	st.awaitStreamEnd()
	st.mu.Lock()
	if !st.hibernating || st.ended || st.overflowed {
		hin := st.handled()
		st.mu.Unlock()
		return Handover{Failed: failed("item-not-found", hin, true)}, true
	}
	if h-st.acked > uint32(len(st.unacked)) {
		hin := st.handled()
		st.mu.Unlock()
		return Handover{Failed: failed("undefined-condition", hin, true)}, true
	}
	if moving != nil {
		// Not under st.mu: routing sends to the session under the
		// table's locks, which moving takes.
		st.mu.Unlock()
		moving(st.sess.JID(), st.sess.Presence())
		st.mu.Lock()
		if !st.hibernating || st.ended || st.overflowed || h-st.acked > uint32(len(st.unacked)) {
			// Ended meanwhile (a race of microseconds): what the other
			// node now gets for it, it routes as for a session it lacks.
			hin := st.handled()
			st.mu.Unlock()
			return Handover{Failed: failed("item-not-found", hin, true)}, true
		}
	}
	st.dropAcked(h)
	ho := Handover{Full: st.sess.String(), H: st.handled(), Acked: st.acked, Unacked: st.unacked}
	// Ended: its Closed event never comes (the session goes on elsewhere)
	// and what still reaches it here is undelivered, not lost.
	st.unacked, st.ended, st.hibernating, st.handedOver = nil, true, false, true
	st.mu.Unlock()
	if p := st.sess.Presence(); p != nil {
		ho.Available, ho.Presence, ho.Lang = true, p.Inner, p.Lang
	}
	m.mu.Lock()
	delete(m.byID, previd)
	delete(m.live, st)
	m.mu.Unlock()
	m.r.Unregister(st.sess)
	return ho, true
}

// handoffWait bounds how long HandOver waits for the end of a stream this
// server is closing (system-shutdown) to reach streamEnded: less than the
// cluster's question waits for the answer (a second). A client closes its
// side once it read the stream's end, which ends it here at once; one
// that does not gets item-not-found and logs in again.
const handoffWait = 800 * time.Millisecond

// awaitStreamEnd waits, at most handoffWait, until a session kept for
// another node (handoff) hibernates: its client saw the stream's end and
// reconnected before the server finished ending it, and the session's
// counts are final only once the stream has read its last stanza.
func (st *state) awaitStreamEnd() {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for end := time.Now().Add(handoffWait); time.Now().Before(end); <-t.C {
		st.mu.Lock()
		waiting := st.handoff && !st.hibernating && !st.ended
		st.mu.Unlock()
		if !waiting {
			return
		}
	}
}

// resumeHere binds, on this node, a session another node handed over
// (see HandOver) and makes c's stream carry it.
func (m *Module) resumeHere(ctx context.Context, c router.ConnInfo, previd string, ho Handover) ([]byte, error) {
	if ho.Failed != nil {
		return ho.Failed, nil
	}
	full, err := jid.Parse(ho.Full)
	if err != nil || full.Bare().String() != c.Session.Bare().String() {
		return failed("item-not-found", 0, false), nil
	}
	sess := router.NewSession(context.Background(), full.Bare(), c.Stream)
	st := &state{m: m, sess: sess, id: previd, stream: c.Stream}
	// Both counts go on from where they were on the other node: what the
	// session handled from the client, and what the client acknowledged.
	st.inBase = -ho.H
	st.acked, st.unacked = ho.Acked, ho.Unacked
	st.sent = ho.Acked + uint32(len(ho.Unacked))
	slot.Get(sess).st = st
	// Until what the other node handed over is written, what comes for
	// the session (from the moment it is bound; offline messages at its
	// presence) only queues after it, as while it hibernated: written
	// directly it would go out before the older stanzas and, still in
	// the queue, a second time with them.
	var inner router.Sink
	sess.WrapSink(func(in router.Sink) router.Sink {
		inner = in
		return st
	})
	sess.Keep()
	if err := m.r.Bind(sess, full, nil); err != nil {
		return failed("item-not-found", ho.H, true), nil
	}
	m.mu.Lock()
	m.live[st] = struct{}{}
	m.byID[previd] = st
	m.mu.Unlock()
	if ho.Available {
		m.r.SetPresence(ctx, sess, &router.Stanza{Kind: router.KindPresence, From: full, Inner: ho.Presence, Lang: ho.Lang})
	}
	st.mu.Lock()
	for _, b := range st.unacked {
		c.Stream.Send(b)
	}
	if len(st.unacked) > 0 {
		c.Stream.Send(requestAck)
		st.requested = st.sent
	}
	st.inner = inner
	st.mu.Unlock()
	c.Resume(sess)
	m.r.Fire(ctx, router.Resumed, sess)
	return wire.NewBuilder(nil).StartNS("resumed", NS, "h", strconv.FormatUint(uint64(ho.H), 10), "previd", previd).End().Bytes(), nil
}

// Request is what a node asks the others for a session to resume.
type Request struct {
	Previd, Owner string
	H             uint32
}

// Marshal encodes a Request for the other nodes.
func (r Request) Marshal() []byte {
	b, _ := json.Marshal(r)
	return b
}

// ParseRequest decodes what Request.Marshal made.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	err := json.Unmarshal(b, &r)
	return r, err
}
