package xmppd

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
)

// The session table is split into shards by bare JID so that routing never
// takes a global lock. Each account's session list is copy-on-write: readers
// take the slice under a read lock and use it without holding the lock.
const numShards = 256

type shard struct {
	mu       sync.RWMutex
	accounts map[string][]*Session // bare JID → bound sessions
}

var shardSeed = maphash.MakeSeed()

func (s *Server) shardOf(bare string) *shard {
	return &s.shards[maphash.String(shardSeed, bare)%numShards]
}

// sessionsOf returns the bound sessions of a bare JID (do not modify).
func (s *Server) sessionsOf(bare string) []*Session {
	sh := s.shardOf(bare)
	sh.mu.RLock()
	list := sh.accounts[bare]
	sh.mu.RUnlock()
	return list
}

// register adds a bound session; an older session with the same full JID
// is closed with conflict (RFC 6120 §7.7.2.2). False, and nothing
// changed, when the account already has SessionsPerAccount other
// resources.
func (s *Server) register(sess *Session) bool {
	sh := s.shardOf(sess.bareStr)
	sh.mu.Lock()
	old := sh.accounts[sess.bareStr]
	list := make([]*Session, 0, len(old)+1)
	var replaced *Session
	for _, o := range old {
		if o.resource == sess.resource {
			replaced = o
			continue
		}
		list = append(list, o)
	}
	if limit := s.cfg.SessionsPerAccount; limit > 0 && len(list) >= limit {
		sh.mu.Unlock()
		return false
	}
	sh.accounts[sess.bareStr] = append(list, sess)
	sh.mu.Unlock()
	if replaced != nil {
		replaced.closeWith("conflict", "replaced by a new connection with the same resource")
	}
	return true
}

func (s *Server) unregister(sess *Session) {
	s.setCarbons(sess, false)
	sh := s.shardOf(sess.bareStr)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.accounts[sess.bareStr]
	list := make([]*Session, 0, len(old))
	for _, o := range old {
		if o != sess {
			list = append(list, o)
		}
	}
	if len(list) == 0 {
		delete(sh.accounts, sess.bareStr)
	} else {
		sh.accounts[sess.bareStr] = list
	}
}

func (s *Server) allSessions() []*Session {
	var all []*Session
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, l := range sh.accounts {
			all = append(all, l...)
		}
		sh.mu.RUnlock()
	}
	return all
}

func (s *Server) session(full jid.JID) *Session {
	res := full.Resourcepart()
	for _, sess := range s.sessionsOf(bareString(full)) {
		if sess.resource == res {
			return sess
		}
	}
	return nil
}

func bareString(j jid.JID) string {
	if l := j.Localpart(); l != "" {
		return l + "@" + j.Domainpart()
	}
	return j.Domainpart()
}

// Deliver implements Router.
func (s *Server) Deliver(full jid.JID, st *Stanza) bool {
	sess := s.session(full)
	return sess != nil && sess.send(st.Bytes())
}

// Sessions implements Router.
func (s *Server) Sessions(bare jid.JID) []SessionInfo {
	list := s.sessionsOf(bareString(bare))
	out := make([]SessionInfo, len(list))
	for i, sess := range list {
		out[i] = sess.info()
	}
	return out
}

// SetPresence implements Router.
func (s *Server) SetPresence(full jid.JID, p *Stanza) {
	sess := s.session(full)
	if sess == nil {
		return
	}
	if p == nil {
		sess.presence.Store(nil)
		return
	}
	p.Bytes() // computed before publishing: readers then only read it
	sess.priority.Store(int32(presencePriority(p)))
	was := sess.presence.Swap(p)
	if was == nil && sess.priority.Load() >= 0 {
		ctx := context.Background()
		for _, h := range s.cfg.Mux.available {
			func() {
				defer s.recoverHandler("OnAvailable")
				h(ctx, full)
			}()
		}
	}
}

func presencePriority(p *Stanza) int {
	i := strings.Index(string(p.Inner), "<priority>")
	if i < 0 {
		return 0
	}
	rest := string(p.Inner[i+len("<priority>"):])
	j := strings.IndexByte(rest, '<')
	if j < 0 {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(rest[:j]))
	if err != nil || n < -128 || n > 127 {
		return 0
	}
	return n
}

// SetInterested implements Router.
func (s *Server) SetInterested(full jid.JID) {
	if sess := s.session(full); sess != nil {
		sess.interested.Store(true)
	}
}

// IsLocal implements Router.
func (s *Server) IsLocal(ctx context.Context, bare jid.JID) (bool, error) {
	if bare.Domainpart() != s.domain.Domainpart() || bare.Localpart() == "" {
		return false, nil
	}
	if len(s.sessionsOf(bareString(bare))) > 0 {
		return true, nil
	}
	_, err := s.cfg.Accounts.Account(ctx, auth.Number(bare.Localpart()))
	if errors.Is(err, auth.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Normalize implements Router.
func (s *Server) Normalize(j jid.JID) (jid.JID, error) {
	if j.Domainpart() != s.domain.Domainpart() || j.Localpart() == "" {
		return j, nil
	}
	local := j.Localpart()
	n, err := s.cfg.Parser.Parse(local)
	if err != nil {
		return j, stanzaErr("cancel", "item-not-found", "not a valid phone number")
	}
	if string(n) == local {
		return j, nil
	}
	out, err := jid.New(string(n), j.Domainpart(), j.Resourcepart())
	if err != nil {
		return j, stanzaErr("modify", "jid-malformed", "")
	}
	return out, nil
}

// fromSession handles a stanza read from a local session (From stamped).
func (s *Server) fromSession(ctx context.Context, sess *Session, st *Stanza) {
	s.m.routed(st.Kind)
	if st.To.Equal(jid.JID{}) {
		switch st.Kind {
		case KindIQ:
			if st.Payload.Space == nsSession && st.Payload.Local == "session" {
				sess.send(st.Reply("result", nil).Bytes())
				return
			}
			st.setTo(sess.bare)
			st.ToAbsent = true
		case KindMessage:
			st.setTo(sess.bare)
			st.ToAbsent = true
		}
	} else if st.toStr == "" { // not yet normalised by the session's cache
		to, err := s.Normalize(st.To)
		if err != nil {
			s.bounce(st, err)
			return
		}
		st.setTo(to)
	}
	if s.isCarbonsIQ(sess, st) {
		s.carbonsIQ(sess, st)
		return
	}
	if s.filter(ctx, st, false) {
		return
	}
	if st.Kind == KindMessage {
		s.carbonsSent(sess, st)
	}
	if st.Kind == KindPresence {
		if h := s.cfg.Mux.presence; h != nil {
			defer s.recoverHandler("OutboundPresence")
			h.OutboundPresence(ctx, st)
		}
		return
	}
	s.Route(ctx, st)
}

// filter runs the filters; true means the stanza was stopped.
func (s *Server) filter(ctx context.Context, st *Stanza, inbound bool) bool {
	for _, f := range s.cfg.Mux.filters {
		drop, err := f(ctx, st, inbound)
		if err != nil {
			s.bounce(st, err)
			return true
		}
		if drop {
			return true
		}
	}
	return false
}

// bounce answers st with an error, unless st is itself an error or an iq
// result (RFC 6120 §8.3.1).
func (s *Server) bounce(st *Stanza, err error) {
	if st.Type == "error" || (st.Kind == KindIQ && st.Type == "result") || st.From.Equal(jid.JID{}) {
		return
	}
	var se stanza.Error
	if !errors.As(err, &se) {
		s.log.Error("handler failed", "kind", st.Kind.String(), "to", st.To.String(), "err", err)
		se = stanzaErr("wait", "internal-server-error", "")
	}
	reply := st.ErrorReply(se)
	if reply.From.Equal(jid.JID{}) {
		reply.From = s.domain
	}
	if st.Kind == KindPresence && st.ToAbsent {
		reply.From = jid.JID{}
	}
	s.reply(reply)
}

// reply sends a stanza the server generated in answer to st.From. A local
// requester gets it straight on its stream, past the filters: it asked.
func (s *Server) reply(r *Stanza) {
	if r.To.Domainpart() == s.domain.Domainpart() && r.To.Localpart() != "" {
		if r.To.Resourcepart() != "" {
			if sess := s.session(r.To); sess != nil {
				sess.send(r.Bytes())
			}
		}
		return // a bare-JID sender is the server acting for an account; nothing to answer
	}
	s.Route(context.Background(), r)
}

// Route implements Router: RFC 6121 §8 delivery of a stanza whose From is set.
func (s *Server) Route(ctx context.Context, st *Stanza) {
	to := st.To
	if to.Domainpart() != s.domain.Domainpart() {
		if h := s.cfg.Mux.remote; h != nil {
			defer s.recoverHandler("RemoteHandler")
			h(ctx, st)
			return
		}
		s.bounce(st, stanzaErr("cancel", "remote-server-not-found", "federation is not available"))
		return
	}
	if to.Localpart() == "" {
		s.toServer(ctx, st)
		return
	}
	if s.filter(ctx, st, true) {
		return
	}
	switch st.Kind {
	case KindPresence:
		if h := s.cfg.Mux.presence; h != nil {
			defer s.recoverHandler("InboundPresence")
			h.InboundPresence(ctx, st)
		}
	case KindMessage:
		s.routeMessage(ctx, st)
	case KindIQ:
		if to.Resourcepart() == "" {
			s.serveIQ(ctx, ScopeAccount, st)
			return
		}
		if sess := s.session(to); sess != nil {
			sess.send(st.Bytes())
			return
		}
		s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
	}
}

// RouteInbound routes a stanza that arrived from another server (its From
// already checked against the peer's authenticated domain): the local
// address is normalised like a client's, then it is routed.
func (s *Server) RouteInbound(ctx context.Context, st *Stanza) {
	s.m.routed(st.Kind)
	if st.To.Equal(jid.JID{}) {
		st.setTo(s.domain)
	}
	to, err := s.Normalize(st.To)
	if err != nil {
		s.bounce(st, err)
		return
	}
	st.setTo(to)
	s.Route(ctx, st)
}

// toServer handles stanzas addressed to the domain itself.
func (s *Server) toServer(ctx context.Context, st *Stanza) {
	if st.Kind != KindIQ {
		return // messages and presence to the server itself are not used
	}
	if st.To.Resourcepart() != "" {
		s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
		return
	}
	s.serveIQ(ctx, ScopeServer, st)
}

// serveIQ runs the handler registered for an iq get/set.
func (s *Server) serveIQ(ctx context.Context, scope Scope, st *Stanza) {
	if st.Type != "get" && st.Type != "set" {
		if st.Type != "result" && st.Type != "error" {
			s.bounce(st, stanzaErr("modify", "bad-request", "iq type must be get, set, result or error"))
		}
		return // results and errors to the server or a bare JID end here
	}
	h := s.cfg.Mux.iqHandler(scope, st.Payload)
	if h == nil {
		s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
		return
	}
	// ScopeAccount handlers get iqs for every valid number of the domain
	// (Normalize refused the others), with or without an account: whether
	// a number has an account must not be visible to other users (SPEC.md
	// "Limits on what clients send"), so there is no account check here and
	// each handler answers a latent number as it answers an account.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	result, err := func() (res []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in iq handler", "payload", st.Payload.Space, "panic", r)
				err = stanzaErr("wait", "internal-server-error", "")
			}
		}()
		return h(hctx, st)
	}()
	if err != nil {
		s.bounce(st, err)
		return
	}
	s.reply(st.Reply("result", result))
}

// routeMessage delivers a message to a local account (RFC 6121 §8.5).
func (s *Server) routeMessage(ctx context.Context, st *Stanza) {
	list := s.sessionsOf(st.toBareString())
	if res := st.To.Resourcepart(); res != "" {
		for _, to := range list {
			if to.resource == res {
				to.send(st.Bytes())
				s.carbonsReceived(st, list, func(sess *Session) bool { return sess == to })
				return
			}
		}
		// §8.5.3.2.1: no such resource
		switch st.Type {
		case "error", "headline":
			return
		case "groupchat":
			s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
			return
		}
	}
	switch st.Type {
	case "error":
		return
	case "groupchat":
		s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
		return
	}
	best := int32(-1)
	n := 0
	for _, sess := range list {
		if sess.available() {
			n++
			best = max(best, sess.priority.Load())
		}
	}
	if n == 0 {
		s.offline(ctx, st)
		return
	}
	b := st.Bytes()
	// The delivered set is decided once: priorities may change meanwhile,
	// and carbons go exactly to the enabled sessions not in it.
	var got []*Session
	for _, sess := range list {
		if !sess.available() {
			continue
		}
		// normal goes to the resources of highest priority, chat and
		// headline to all non-negative ones.
		if (st.Type == "normal" || st.Type == "") && sess.priority.Load() != best {
			continue
		}
		sess.send(b)
		if s.carbonsOn.Load() != 0 {
			got = append(got, sess)
		}
	}
	s.carbonsReceived(st, list, func(sess *Session) bool { return slices.Contains(got, sess) })
}

// offline handles a message to a local account with no available resource.
func (s *Server) offline(ctx context.Context, st *Stanza) {
	if st.Type == "headline" {
		return
	}
	if h := s.cfg.Mux.offline; h != nil {
		if err := h(ctx, st); err != nil {
			s.bounce(st, err)
		}
		return
	}
	s.bounce(st, stanzaErr("cancel", "service-unavailable", ""))
}

var _ Router = (*Server)(nil)
