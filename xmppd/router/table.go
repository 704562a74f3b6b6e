package router

import (
	"hash/maphash"
	"sync"

	"mellium.im/xmpp/jid"
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

func (r *Router) shardOf(bare string) *shard {
	return &r.shards[maphash.String(shardSeed, bare)%numShards]
}

// sessionsOf returns the bound sessions of a bare JID (do not modify).
func (r *Router) sessionsOf(bare string) []*Session {
	sh := r.shardOf(bare)
	sh.mu.RLock()
	list := sh.accounts[bare]
	sh.mu.RUnlock()
	return list
}

// register adds a bound session; an older session with the same full JID
// is closed with conflict (RFC 6120 §7.7.2.2). False, and nothing
// changed, when the account already has SessionsPerAccount other
// resources.
func (r *Router) register(sess *Session) bool {
	sh := r.shardOf(sess.bareStr)
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
	if limit := r.cfg.SessionsPerAccount; limit > 0 && len(list) >= limit {
		sh.mu.Unlock()
		return false
	}
	sh.accounts[sess.bareStr] = append(list, sess)
	sh.mu.Unlock()
	if replaced != nil {
		replaced.Close("conflict", "replaced by a new connection with the same resource")
	}
	return true
}

// unregister takes sess out of the table (if it is in).
func (r *Router) unregister(sess *Session) {
	sh := r.shardOf(sess.bareStr)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.accounts[sess.bareStr]
	list := make([]*Session, 0, len(old))
	for _, o := range old {
		if o != sess {
			list = append(list, o)
		}
	}
	if len(list) == len(old) {
		return
	}
	if len(list) == 0 {
		delete(sh.accounts, sess.bareStr)
	} else {
		sh.accounts[sess.bareStr] = list
	}
}

// All returns every bound session of this node (not the mirrors of
// sessions on other nodes of a cluster: shutting one node down must not
// close them).
func (r *Router) All() []*Session {
	var all []*Session
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, l := range sh.accounts {
			for _, s := range l {
				if !s.remote {
					all = append(all, s)
				}
			}
		}
		sh.mu.RUnlock()
	}
	return all
}

// Session returns the bound session with the full JID, or nil.
func (r *Router) Session(full jid.JID) *Session {
	res := full.Resourcepart()
	for _, sess := range r.sessionsOf(bareString(full)) {
		if sess.resource == res {
			return sess
		}
	}
	return nil
}

// Sessions returns the bound sessions of the account bare. The slice is
// shared: do not modify it.
func (r *Router) Sessions(bare jid.JID) []*Session {
	return r.sessionsOf(bareString(bare))
}
