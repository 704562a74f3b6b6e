package router

import (
	"context"

	"mellium.im/xmpp/jid"
)

// Sessions on other nodes of a cluster. A cluster module mirrors each
// session another node holds as a remote Session in the table, whose Sink
// carries what it is sent to that node (which writes it to the real
// stream), and whose presence it keeps up to date. Routing, presence
// broadcast and probes then treat it as any session: the data path gains
// no branch, and a single node without a cluster has none in its table.

// NewRemoteSession returns the mirror of the session full held by another
// node of a cluster; sink sends to that node. It is put in the table with
// AddRemote; its context ends at RemoveRemote.
func NewRemoteSession(parent context.Context, full jid.JID, sink Sink) *Session {
	s := NewSession(parent, full, sink)
	s.remote = true
	return s
}

// Remote reports whether the session is the mirror of one on another node.
func (s *Session) Remote() bool { return s.remote }

// AddRemote puts the mirror sess in the table, in place of a session with
// the same full JID, which is not closed: the node that bound the newer
// one closes the older (conflict) through its own mirror of it. No event
// fires and no limit applies: the owning node did both.
func (r *Router) AddRemote(sess *Session) {
	sh := r.shardOf(sess.bareStr)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.accounts[sess.bareStr]
	list := make([]*Session, 0, len(old)+1)
	for _, o := range old {
		if o.resource != sess.resource {
			list = append(list, o)
		}
	}
	sh.accounts[sess.bareStr] = append(list, sess)
}

// RemoveRemote takes the mirror sess out of the table (if it is still
// there) and ends its context. No event fires.
func (r *Router) RemoveRemote(sess *Session) {
	r.Unregister(sess)
}
