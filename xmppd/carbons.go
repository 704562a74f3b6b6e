package xmppd

import (
	"bytes"
	"encoding/xml"
	"io"

	"mellium.im/xmpp/jid"
)

// Message Carbons (XEP-0280): a session that enabled carbons gets a copy
// of the eligible messages its account receives on another resource
// (<received/>) and of those another resource of the account sends
// (<sent/>). The state is one atomic flag per session plus a server-wide
// count of flagged sessions, so that while no one uses carbons the router
// pays one atomic load per message, and otherwise a walk over the
// account's session list it already has (or one shard read lock); the
// store is never touched.
const (
	// NSCarbons is the namespace of XEP-0280 Message Carbons.
	NSCarbons = "urn:xmpp:carbons:2"
	// NSForward is the namespace of XEP-0297 Stanza Forwarding.
	NSForward = "urn:xmpp:forward:0"
	// NSHints is the namespace of XEP-0334 Message Processing Hints.
	NSHints = "urn:xmpp:hints"
)

// setCarbons turns carbons on or off for sess and keeps the count. A
// session that is closing is turned off again, since unregister (which
// turns it off for good) may already have run.
func (s *Server) setCarbons(sess *Session, on bool) {
	if !on {
		if sess.carbons.Swap(false) {
			s.carbonsOn.Add(-1)
		}
		return
	}
	if !sess.carbons.Swap(true) {
		s.carbonsOn.Add(1)
	}
	select {
	case <-sess.kill:
		s.setCarbons(sess, false)
	default:
	}
}

// isCarbonsIQ reports whether st is an iq of the carbons namespace that
// the server answers for sess: addressed to the server, to the session's
// own account, or to no one.
func (s *Server) isCarbonsIQ(sess *Session, st *Stanza) bool {
	return st.Kind == KindIQ && st.Payload.Space == NSCarbons &&
		(st.To.Equal(sess.bare) || st.To.Equal(s.domain))
}

// carbonsIQ answers <enable/> and <disable/> (XEP-0280 §4, §5).
func (s *Server) carbonsIQ(sess *Session, st *Stanza) {
	var err error
	switch {
	case st.Type == "result" || st.Type == "error":
		return
	case st.Type != "set":
		err = stanzaErr("modify", "bad-request", "carbons are enabled and disabled with iq of type set")
	case st.Payload.Local == "enable":
		s.setCarbons(sess, true)
	case st.Payload.Local == "disable":
		s.setCarbons(sess, false)
	default:
		err = stanzaErr("modify", "bad-request", "")
	}
	if err != nil {
		s.bounce(st, err)
		return
	}
	sess.send(st.Reply("result", nil).Bytes())
}

// carbonEligible reports whether a message may be copied (XEP-0280 §6):
// type chat, or normal with a body; never one marked <private/> or
// <no-copy/>, nor one that is itself a carbon.
func carbonEligible(st *Stanza) bool {
	chat := st.Type == "chat"
	if !chat && st.Type != "normal" && st.Type != "" {
		return false // groupchat, headline, error
	}
	if chat && !bytes.Contains(st.Inner, []byte(NSCarbons)) && !bytes.Contains(st.Inner, []byte(NSHints)) {
		return true
	}
	if !chat && !bytes.Contains(st.Inner, []byte("body")) {
		return false
	}
	// The rare case: look at the children for real.
	d := xml.NewDecoder(bytes.NewReader(st.wrapped()))
	depth, body := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			switch {
			case t.Name.Space == NSCarbons: // <private/>, <received/>, <sent/>
				return false
			case t.Name.Space == NSHints && t.Name.Local == "no-copy":
				return false
			case t.Name.Space == NSClient && t.Name.Local == "body":
				body = true
			}
		case xml.EndElement:
			depth--
		}
	}
	return chat || body
}

// appendCarbon appends the copy of st for the resource to, wrapped in
// <received/> or <sent/> (dir) and <forwarded/>, from the bare JID of the
// account.
func appendCarbon(b []byte, st *Stanza, bare, to, dir string) []byte {
	b = append(b, `<message from="`...)
	b = AppendEscaped(b, bare)
	b = append(b, `" to="`...)
	b = AppendEscaped(b, to)
	b = append(b, '"')
	if st.Type != "" {
		b = append(b, ` type="`...)
		b = AppendEscaped(b, st.Type)
		b = append(b, '"')
	}
	b = append(b, `><`...)
	b = append(b, dir...)
	b = append(b, ` xmlns="`+NSCarbons+`"><forwarded xmlns="`+NSForward+`">`...)
	b = append(b, st.wrapped()...)
	b = append(b, `</forwarded></`...)
	b = append(b, dir...)
	return append(b, `></message>`...)
}

// carbonsReceived copies a message that was just delivered to some
// sessions of list (the account's) to the others that enabled carbons;
// got reports whether a session was given the message itself.
func (s *Server) carbonsReceived(st *Stanza, list []*Session, got func(*Session) bool) {
	if s.carbonsOn.Load() == 0 {
		return
	}
	from, checked := "", false
	for _, sess := range list {
		if !sess.carbons.Load() || got(sess) {
			continue
		}
		if !checked {
			if !carbonEligible(st) {
				return
			}
			checked, from = true, st.fromString()
		}
		if sess.fullStr == from {
			continue // a resource writing to its own account has it already
		}
		sess.send(appendCarbon(nil, st, sess.bareStr, sess.fullStr, "received"))
	}
}

// carbonsSent copies a message a local session sends to the account's
// other sessions that enabled carbons. Messages to the account itself are
// left to carbonsReceived; those to the server are not copied.
func (s *Server) carbonsSent(from *Session, st *Stanza) {
	if s.carbonsOn.Load() == 0 || st.To.Equal(s.domain) || st.toBareString() == from.bareStr {
		return
	}
	checked := false
	for _, sess := range s.sessionsOf(from.bareStr) {
		if sess == from || !sess.carbons.Load() {
			continue
		}
		if !checked {
			if !carbonEligible(st) {
				return
			}
			checked = true
		}
		sess.send(appendCarbon(nil, st, from.bareStr, sess.fullStr, "sent"))
	}
}

// fromString returns From as a string, from the cache when possible.
func (s *Stanza) fromString() string {
	if s.fromStr != "" {
		return s.fromStr
	}
	if s.From.Equal(jid.JID{}) {
		return ""
	}
	return s.From.String()
}
