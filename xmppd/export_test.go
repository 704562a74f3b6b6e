package xmppd

import "mellium.im/xmpp/jid"

// RateCounted is how many bytes the session full has sent, as its rate
// (C2SRate) counted them; -1 when it is not bound or has no rate.
func (s *Server) RateCounted(full jid.JID) int64 {
	rs := s.router.Session(full)
	if rs == nil {
		return -1
	}
	sess, ok := rs.Sink().(*session)
	if !ok || sess.dec.rate == nil {
		return -1
	}
	return sess.dec.rate.counted.Load()
}

// RemoteDomains is how many remote domains the federation keeps state for.
func (f *Federation) RemoteDomains() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.remotes)
}
