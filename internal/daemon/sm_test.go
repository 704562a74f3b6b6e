package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/internal/xmpptest"
	"dialtone/sms"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
)

// TestStreamManagementTimeout: a XEP-0198 session that is not resumed in
// time has what it did not acknowledge, and what queued on it while it
// hibernated, stored offline with exactly one SMS notice, on each store.
func TestStreamManagementTimeout(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_SMS_GATEWAY":       "webhook",
				"XMPPD_SMS_WEBHOOK_URL":   rcv.URL,
				"XMPPD_SM_RESUME_TIMEOUT": "1s",
			}))
			t.Run("unacked", func(t *testing.T) { testSMTimeout(t, s, rcv, false) })
			t.Run("queued_while_hibernating", func(t *testing.T) { testSMTimeout(t, s, rcv, true) })
			t.Run("archived_notice_only", func(t *testing.T) { testNoticeOnly(t, s, rcv) })
			t.Run("offline_handover_not_doubled", func(t *testing.T) { testHandoverNotDoubled(t, s) })
			t.Run("mam_queried_left_to_archive", func(t *testing.T) { testArchivedAtTimeout(t, s, rcv) })
			t.Run("ack_after_offline_stores", func(t *testing.T) { testAckAfterStores(t, s) })
		})
	}
}

// smLogin logs u in, enables resumable stream management and sends
// initial presence; it returns the client and the stream's id.
func smLogin(t *testing.T, s *daemonUnderTest, u user, res string) (*xmpptest.Client, string) {
	t.Helper()
	c := s.login(t, u, res)
	c.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	e := c.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" })
	if e.Attr("id") == "" || e.Attr("resume") != "true" {
		t.Fatalf("enabled: %v", e)
	}
	c.Available()
	return c, e.Attr("id")
}

func testSMTimeout(t *testing.T, s *daemonUnderTest, rcv *smsReceiver, queued bool) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	b, _ := smLogin(t, s, bob, "phone")
	bj, _ := jid.Parse(bob.bare())
	if !queued {
		// Delivered on the stream, never acknowledged.
		send(t, a, bob.bare(), "never acked")
		b.Expect("the message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
	}
	b.Conn.Close() // the network goes away
	body := "never acked"
	if queued {
		// Wait until the server saw the stream drop: the session is
		// still there (hibernating) and the message queues on it.
		body = "queued"
		waitFor(t, "the stream to drop", func() bool { return hibernating(s, bj) })
		send(t, a, bob.bare(), body)
		if n := stored(t, s, bob.num); n != 0 {
			t.Fatalf("%d stored while the session hibernates", n)
		}
		if got := rcv.To(bob.num); len(got) != 0 {
			t.Fatalf("notice while the session hibernates: %+v", got)
		}
	}
	waitFor(t, "the message to be stored at the timeout", func() bool { return stored(t, s, bob.num) == 1 })
	m := rcv.Wait(t, bob.num, 1, noticeTimeout)
	if want := `New message from ` + alice.num + ` on localhost: "` + body + `".`; m.Text != want || m.Purpose != "notice" {
		t.Errorf("notice %+v, want %q", m, want)
	}
	// The next login gets it once, then the store holds exactly one notice.
	nb := s.login(t, bob, "again")
	if msgs := comeOnline(t, nb); len(msgs) != 1 || msgs[0].Body != body {
		t.Fatalf("delivered %+v", msgs)
	}
	times, err := s.d.DB.QueuedTimes(context.Background(), bob.num, sms.PurposeNotice, time.Time{})
	if err != nil || len(times) != 1 {
		t.Fatalf("%d notices queued (%v), want 1", len(times), err)
	}
	if got := rcv.To(bob.num); len(got) != 1 {
		t.Fatalf("SMS %+v, want one", got)
	}
}

// hibernating reports whether the account's session "phone" waits for
// a resumption.
func hibernating(s *daemonUnderTest, bare jid.JID) bool {
	for _, sess := range s.d.Server.Sessions(bare) {
		if sess.Resource() == "phone" && sm.Hibernating(sess) {
			return true
		}
	}
	return false
}

// The notice-only path (a message kept by the archive): exactly one
// notice, nothing stored.
func testNoticeOnly(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, bob := s.newUser(t), s.activeUser(t)
	from, _ := jid.Parse(alice.bare() + "/x")
	to, _ := jid.Parse(bob.bare() + "/phone")
	st := &router.Stanza{Kind: router.KindMessage, Type: "chat", From: from, To: to, Inner: []byte("<body>archived</body>")}
	if err := s.d.Offline.Notice(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	m := rcv.Wait(t, bob.num, 1, noticeTimeout)
	if want := `New message from ` + alice.num + ` on localhost: "archived".`; m.Text != want {
		t.Errorf("notice %q, want %q", m.Text, want)
	}
	if n := stored(t, s, bob.num); n != 0 {
		t.Errorf("%d stored, want none", n)
	}
	times, err := s.d.DB.QueuedTimes(context.Background(), bob.num, sms.PurposeNotice, time.Time{})
	if err != nil || len(times) != 1 {
		t.Fatalf("%d notices queued (%v), want 1", len(times), err)
	}
}

// A hibernating session counts as available: a contact's probe gets its
// presence, no unavailable presence goes out while it waits, and a
// message to the bare JID queues on it; resumed, it gets the message.
func testHibernatingAvailable(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "x")
	b := s.login(t, bob, "phone")
	r, _ := iq(b, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	mustResult(t, r)
	b.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := b.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" })
	b.Send(`<presence><status>pocket</status></presence>`)
	befriend(t, a, b)
	bj, _ := jid.Parse(bob.bare())
	b.Conn.Close()
	waitFor(t, "the stream to drop", func() bool { return hibernating(s, bj) })
	a2 := s.login(t, alice, "tablet")
	a2.Send(`<presence/>`)
	p := a2.Expect("the hibernating session's presence", isPresence("", b.JID))
	if !strings.Contains(p.Inner, "pocket") {
		t.Errorf("probe answered with %v", p)
	}
	send(t, a2, bob.bare(), "to the bare JID")
	if n := stored(t, s, bob.num); n != 0 {
		t.Fatalf("%d stored while the session hibernates", n)
	}
	// Resumed (h=0: the client counted nothing), the session gets what it
	// missed, the message among it.
	c := xmpptest.Dial(t, s.c2s())
	c.Authenticate(bob.num, bob.pass)
	c.Send(`<resume xmlns='urn:xmpp:sm:3' previd='` + en.Attr("id") + `' h='0'/>`)
	c.Expect("resumed", func(e xmpptest.Elem) bool { return e.XMLName.Local == "resumed" })
	c.Expect("the message", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "to the bare JID") })
	// No unavailable presence of the session ever reached the contact.
	for _, e := range drain(a) {
		if isPresence("unavailable", b.JID)(e) {
			t.Fatalf("unavailable presence of a hibernating session: %v", e)
		}
	}
}

// A stored message handed over to a managed session whose stream drops
// before the client answered the ping after it stays stored once: the
// timeout does not store it again, and the next login gets it once.
func testHandoverNotDoubled(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	send(t, a, bob.bare(), "stored first")
	if n := stored(t, s, bob.num); n != 1 {
		t.Fatalf("%d stored", n)
	}
	b := s.login(t, bob, "phone")
	b.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	b.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" })
	b.Send(`<presence/>`)
	b.Expect("the stored message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
	b.Expect("the server's ping after it", isServerPing)
	bj, _ := jid.Parse(bob.bare())
	b.Conn.Close() // the ping is never answered
	waitFor(t, "the hibernation to end", func() bool { return len(s.d.Server.Sessions(bj)) == 0 })
	nb := s.login(t, bob, "again")
	if msgs := comeOnline(t, nb); len(msgs) != 1 || msgs[0].Body != "stored first" {
		t.Fatalf("delivered %+v", msgs)
	}
	waitFor(t, "the delivered message to be removed", func() bool { return stored(t, s, bob.num) == 0 })
}

// A stream that queried the archive (XEP-0313) and then dropped leaves an
// unacknowledged, archived message in the archive at the timeout: it is
// not stored offline (the client will page the archive), and the notice
// rules run exactly once, as for any offline receiver.
func testArchivedAtTimeout(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	b, _ := smLogin(t, s, bob, "phone")
	r, _ := iq(b, "set", "", `<query xmlns='urn:xmpp:mam:2' queryid='q1'/>`)
	mustResult(t, r)
	send(t, a, bob.bare(), "from the archive")
	b.Expect("the message", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.Inner, "from the archive")
	})
	b.Conn.Close() // never acknowledged
	m := rcv.Wait(t, bob.num, 1, noticeTimeout)
	if want := `New message from ` + alice.num + ` on localhost: "from the archive".`; m.Text != want {
		t.Errorf("notice %q, want %q", m.Text, want)
	}
	if n := stored(t, s, bob.num); n != 0 {
		t.Fatalf("%d stored offline, want none: the archive has it", n)
	}
	nb := s.login(t, bob, "again")
	// iq would skip the results: they come before its answer.
	nb.Send(`<iq type='set' id='mam2'><query xmlns='urn:xmpp:mam:2' queryid='q2'/></iq>`)
	found := nb.Expect("the archived message", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.Inner, "from the archive")
	})
	if !strings.Contains(found.Inner, "urn:xmpp:mam:2") {
		t.Errorf("not a MAM result: %v", found)
	}
	times, err := s.d.DB.QueuedTimes(context.Background(), bob.num, sms.PurposeNotice, time.Time{})
	if err != nil || len(times) != 1 {
		t.Fatalf("%d notices queued (%v), want 1", len(times), err)
	}
}

// Issue 15: messages to an offline account are stored off the sender's
// reader, so a client pipelines them; the <a/> that answers its <r/>, and
// the answer to its ping, acknowledge them: both come only once every one
// of them is in the store.
func testAckAfterStores(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a, _ := smLogin(t, s, alice, "pipe")
	count := func() int {
		n, err := s.d.DB.CountOffline(context.Background(), bob.num)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const n = 200
	for round, ack := range []string{`<r xmlns='urn:xmpp:sm:3'/>`, `<iq type='get' id='pipe-ping' to='` + domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`} {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `<message type='chat' id='p%d-%d' to='%s'><body>pipelined %d</body></message>`, round, i, bob.bare(), i)
		}
		b.WriteString(ack)
		a.Send(b.String())
		e := a.Expect("the acknowledgement", func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "a" || e.Attr("id") == "pipe-ping"
		})
		if got := count(); got != (round+1)*n {
			t.Fatalf("%v came with %d messages stored, want %d", e, got, (round+1)*n)
		}
	}
}
