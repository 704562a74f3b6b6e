package router

import (
	"context"
	"errors"
	"sync"

	"mellium.im/xmpp/jid"
)

// Errors of QuerySession.
var (
	ErrSessionClosed  = errors.New("router: the session is closed")
	ErrTooManyQueries = errors.New("router: too many queries wait for that session")
)

// maxQueries bounds the server's iqs waiting for one session's answer.
const maxQueries = 16

// sessionQueries are the iqs the server sent a session and awaits the
// answer of, by id. They are kept in Router.queries only while one
// waits, so idle sessions pay nothing for them.
type sessionQueries struct {
	mu      sync.Mutex
	waiting map[string]chan *Stanza
	gone    bool // out of Router.queries: take a new one
}

// QuerySession sends the session full an iq of type typ ("get" or "set")
// from the server with payload as its child, and waits for the answer: a
// result or an error stanza (an error answer is no error of
// QuerySession). A client reads its stream in order, so its answer proves
// it has taken everything sent to it before the query. ErrSessionClosed
// when the session is not bound or ends first; ctx bounds the wait.
func (r *Router) QuerySession(ctx context.Context, full jid.JID, typ string, payload []byte) (*Stanza, error) {
	sess := r.Session(full)
	if sess == nil {
		return nil, ErrSessionClosed
	}
	queries := &r.queries
	var q *sessionQueries
	for {
		v, _ := queries.LoadOrStore(sess, &sessionQueries{})
		q = v.(*sessionQueries)
		q.mu.Lock()
		if !q.gone {
			break
		}
		q.mu.Unlock() // forgotten meanwhile; the next one is stored anew
	}
	if len(q.waiting) >= maxQueries {
		q.mu.Unlock()
		return nil, ErrTooManyQueries
	}
	// Unique for the session's whole life (the counter of its pings): a
	// late answer to an abandoned query never answers a new one.
	id := sess.NextID("dt-q")
	answer := make(chan *Stanza, 1)
	if q.waiting == nil {
		q.waiting = make(map[string]chan *Stanza, 1)
	}
	q.waiting[id] = answer
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		if delete(q.waiting, id); len(q.waiting) == 0 {
			// Forgotten while locked: a query starting now finds it
			// gone and stores its own.
			queries.CompareAndDelete(sess, q)
			q.gone = true
		}
		q.mu.Unlock()
	}()
	iq := &Stanza{Kind: KindIQ, Type: typ, ID: id, From: r.domain, To: sess.full, Inner: payload}
	if !sess.Send(iq.Bytes()) {
		return nil, ErrSessionClosed
	}
	select {
	case st := <-answer:
		return st, nil
	case <-sess.ctx.Done():
	case <-ctx.Done():
	}
	select {
	case st := <-answer: // it came as the session closed: it counts
		return st, nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, ErrSessionClosed
}

// answered hands st to QuerySession if it is the answer to a query: an iq
// result or error to the server (or with no 'to') with a waited-for id.
func (r *Router) answered(sess *Session, st *Stanza) bool {
	if st.Kind != KindIQ || st.Type != "result" && st.Type != "error" {
		return false
	}
	if !st.To.Equal(jid.JID{}) && !st.To.Equal(r.domain) {
		return false
	}
	v, ok := r.queries.Load(sess)
	if !ok {
		return false
	}
	q := v.(*sessionQueries)
	q.mu.Lock()
	answer, ok := q.waiting[st.ID]
	if ok {
		delete(q.waiting, st.ID)
	}
	q.mu.Unlock()
	if ok {
		answer <- st // buffered for one: never blocks
	}
	return ok
}
