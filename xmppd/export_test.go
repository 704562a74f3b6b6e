package xmppd

import (
	"mellium.im/xmpp/jid"

	"dialtone/xmppd/c2s"
)

// RateCounted is how many bytes the session full has sent, as its rate
// (C2SRate) counted them; -1 when it is not bound or has no rate.
func (s *Server) RateCounted(full jid.JID) int64 {
	rs := s.router.Session(full)
	if rs == nil {
		return -1
	}
	return c2s.RateCounted(rs)
}
