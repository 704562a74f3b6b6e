package im

import "dialtone/xmppd/router"

// SetInterested marks a session as having requested the roster.
func SetInterested(s *router.Session) { interested.Get(s).Store(true) }
