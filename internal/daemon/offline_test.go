package daemon_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

// The SMS gateway the tests point the daemon at.
type (
	smsReceiver = testbin.SMSReceiver
	receivedSMS = testbin.ReceivedSMS
)

var newSMSReceiver = testbin.NewSMSReceiver

// noticeEnv is the daemon configuration of the notice tests: the webhook
// gateway at rcv, short windows and small caps.
func noticeEnv(t *testing.T, dbURL string, extra map[string]string) map[string]string {
	env := map[string]string{
		"XMPPD_DOMAIN":              domain,
		"XMPPD_DATA_DIR":            t.TempDir(),
		"XMPPD_DATABASE_URL":        dbURL,
		"XMPPD_C2S_ADDR":            "127.0.0.1:0",
		"XMPPD_C2S_DIRECT_TLS_ADDR": "",
		"XMPPD_HTTP_ADDR":           "127.0.0.1:0",
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_DEFAULT_REGION":      "KR",
		"XMPPD_LOG_LEVEL":           "debug",
	}
	env["XMPPD_ADMIN_SOCKET"] = filepath.Join(env["XMPPD_DATA_DIR"], "admin.sock")
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// noticeTimeout is how soon a notice must arrive (SPEC.md: the first
// message is notified within 10 seconds).
const noticeTimeout = 10 * time.Second

// window is XMPPD_NOTICE_WINDOW in the notice tests.
const window = 2 * time.Second

// TestOfflineNotices runs the offline queue and its notices on each store
// with real sockets and the webhook gateway at a local receiver.
func TestOfflineNotices(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_SMS_GATEWAY":                       "webhook",
				"XMPPD_SMS_WEBHOOK_URL":                   rcv.URL,
				"XMPPD_NOTICE_WINDOW":                     window.String(),
				"XMPPD_NOTICES_PER_DAY":                   "4",
				"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "2",
				"XMPPD_OFFLINE_LIMIT":                     "6",
			}))
			t.Run("latent_number", func(t *testing.T) { testLatentNumber(t, s, rcv) })
			t.Run("folded_and_capped", func(t *testing.T) { testFolded(t, s, rcv) })
			t.Run("online_receiver", func(t *testing.T) { testOnlineReceiver(t, s, rcv) })
			t.Run("new_numbers_cap", func(t *testing.T) { testNewNumbersCap(t, s, rcv) })
			t.Run("limit", func(t *testing.T) { testOfflineLimit(t, s, rcv) })
			t.Run("not_stored", func(t *testing.T) { testNotStored(t, s, rcv) })
			t.Run("pass_through", func(t *testing.T) { testPassThrough(t, s) })
			t.Run("landline", func(t *testing.T) { testLandline(t, s, rcv) })
			t.Run("removed_when_processed", func(t *testing.T) { testRemovedWhenProcessed(t, s) })
		})
	}
}

// activeUser is an account that has logged in once (so no notice to it
// carries a password) and is offline now.
func (s *daemonUnderTest) activeUser(t *testing.T) user {
	t.Helper()
	u := s.newUser(t)
	c := s.login(t, u, "once")
	c.Send(`</stream:stream>`)
	c.Conn.Close()
	waitFor(t, "the session of "+u.num+" to end", func() bool {
		j, _ := auth.CanonicalJID(auth.Number(u.num), domain)
		return len(s.d.Server.Sessions(j)) == 0
	})
	return u
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// send sends a chat message from c and checks that nothing came back (no
// error): it was delivered or stored.
func send(t *testing.T, c *xmpptest.Client, to, body string) {
	t.Helper()
	id := nextID("om")
	c.Send(`<message type='chat' id='` + id + `' to='` + to + `'><body>` + body + `</body></message>`)
	for _, e := range drain(c) {
		if e.Attr("id") == id {
			t.Fatalf("message %q to %s came back: %v", body, to, e)
		}
	}
}

// sendRefused sends a chat message from c and returns the error that came
// back for it.
func sendRefused(t *testing.T, c *xmpptest.Client, to, body string) xmpptest.Elem {
	t.Helper()
	id := nextID("om")
	c.Send(`<message type='chat' id='` + id + `' to='` + to + `'><body>` + body + `</body></message>`)
	return c.Expect("the error for "+id, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
}

// delayed is an offline message as delivered: body and XEP-0203 stamp.
type delayed struct {
	From, Body  string
	DelayFrom   string
	Stamp       time.Time
	StampString string
}

func delayedOf(t *testing.T, e xmpptest.Elem) delayed {
	t.Helper()
	var x struct {
		Body  string `xml:"body"`
		Delay struct {
			XMLName xml.Name
			From    string `xml:"from,attr"`
			Stamp   string `xml:"stamp,attr"`
		} `xml:"urn:xmpp:delay delay"`
	}
	if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &x); err != nil {
		t.Fatalf("message does not parse: %v: %v", err, e)
	}
	d := delayed{From: e.Attr("from"), Body: x.Body, DelayFrom: x.Delay.From, StampString: x.Delay.Stamp}
	if x.Delay.Stamp != "" {
		var err error
		if d.Stamp, err = time.Parse(time.RFC3339Nano, x.Delay.Stamp); err != nil {
			t.Errorf("delay stamp %q: %v", x.Delay.Stamp, err)
		}
	}
	return d
}

// comeOnline sends initial presence from c and returns the messages that
// were delivered to it before the answer to a ping. It answers the ping
// that follows stored messages, as a client does (offline.Queue removes
// them only then).
func comeOnline(t *testing.T, c *xmpptest.Client) []delayed {
	t.Helper()
	c.Send(`<presence/>`)
	var out []delayed
	pinged := false
	for _, e := range drain(c) {
		switch {
		case e.XMLName.Local == "message":
			out = append(out, delayedOf(t, e))
		case isServerPing(e):
			answerPing(c, e)
			pinged = true
		}
	}
	if len(out) > 0 && !pinged {
		// it follows the messages, and may come after drain's answer
		answerPing(c, c.Expect("the server's ping after the stored messages", isServerPing))
	}
	return out
}

// isServerPing reports whether e is a ping from the server (XEP-0199).
func isServerPing(e xmpptest.Elem) bool {
	return e.XMLName.Local == "iq" && e.Attr("type") == "get" && e.Attr("from") == domain && strings.Contains(e.Inner, nsPing)
}

func answerPing(c *xmpptest.Client, ping xmpptest.Elem) {
	c.Send(`<iq type='result' id='` + ping.Attr("id") + `' to='` + domain + `'/>`)
}

func bodies(ds []delayed) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Body
	}
	return out
}

func stored(t *testing.T, s *daemonUnderTest, num string) int {
	t.Helper()
	n, err := s.d.DB.CountOffline(context.Background(), num)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var passwordNotice = regexp.MustCompile(`^New message from (\+\d+) on ` + domain + `: "(.*)"\. Log in with your phone number and password ([A-Za-z0-9]+), or tap ` + loginLinkRE + `$`)

// A message to a latent number makes the account unclaimed on the spot,
// and its notice carries the password; with it the receiver logs in and
// gets the messages, oldest first, stamped, and no folded notice follows.
func testLatentNumber(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice := s.newUser(t)
	a := s.login(t, alice, "x")
	latent := s.newNumber()
	before := time.Now().Add(-time.Second)
	send(t, a, latent+"@"+domain, "hello there")
	acct, err := s.d.DB.Account(context.Background(), auth.Number(latent))
	if err != nil || acct.State != auth.StateUnclaimed {
		t.Fatalf("account of %s after a message: %+v %v, want unclaimed", latent, acct, err)
	}
	m := rcv.Wait(t, latent, 1, noticeTimeout)
	got := passwordNotice.FindStringSubmatch(m.Text)
	if got == nil || got[1] != alice.num || got[2] != "hello there" || m.Purpose != "notice" || m.ID == "" {
		t.Fatalf("first notice to a new account: %+v", m)
	}
	password := got[3]
	send(t, a, latent+"@"+domain, "second")
	send(t, a, latent+"@"+domain, "third")
	if n := stored(t, s, latent); n != 3 {
		t.Errorf("%d stored for %s, want 3", n, latent)
	}

	r := s.login(t, user{num: latent, pass: password}, "phone")
	msgs := comeOnline(t, r)
	if want := []string{"hello there", "second", "third"}; fmt.Sprint(bodies(msgs)) != fmt.Sprint(want) {
		t.Fatalf("delivered %q, want %q", bodies(msgs), want)
	}
	var last time.Time
	for _, d := range msgs {
		if d.From != a.JID || d.DelayFrom != domain || d.Stamp.Before(before) || d.Stamp.After(time.Now()) || d.Stamp.Before(last) {
			t.Errorf("delivered %+v (from %s), want from %s, delay from %s, stamp between %v and now, in order", d, d.From, a.JID, domain, before)
		}
		last = d.Stamp
	}
	waitFor(t, "the delivered messages to be removed", func() bool { return stored(t, s, latent) == 0 })
	// came online within the window: no folded notice for the two counted
	rcv.None(t, latent, 1, window+time.Second)
	acct, _ = s.d.DB.Account(context.Background(), auth.Number(latent))
	if acct.State != auth.StateActive {
		t.Errorf("state after login %s", acct.State)
	}
}

// Messages within the window fold into one notice when it closes; a
// message after it is notified at once; the daily cap stops them.
func testFolded(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, carol, bob := s.newUser(t), s.newUser(t), s.activeUser(t)
	a, c := s.login(t, alice, "x"), s.login(t, carol, "x")
	to := bob.bare()
	send(t, a, to, "one")
	m := rcv.Wait(t, bob.num, 1, noticeTimeout)
	if want := `New message from ` + alice.num + ` on localhost: "one".`; m.Text != want || m.Purpose != "notice" {
		t.Errorf("notice %+v, want %q", m, want)
	}
	send(t, a, to, "two")
	if got := rcv.To(bob.num); len(got) != 1 {
		t.Errorf("a message within the window was notified at once: %+v", got)
	}
	m = rcv.Wait(t, bob.num, 2, window+noticeTimeout)
	if want := `1 new message from ` + alice.num + ` on localhost.`; m.Text != want {
		t.Errorf("folded notice %q, want %q", m.Text, want)
	}
	// the window closed: the next message is notified at once
	send(t, c, to, "three")
	m = rcv.Wait(t, bob.num, 3, noticeTimeout)
	if want := `New message from ` + carol.num + ` on localhost: "three".`; m.Text != want {
		t.Errorf("notice after the window %q, want %q", m.Text, want)
	}
	send(t, a, to, "four")
	send(t, c, to, "five")
	m = rcv.Wait(t, bob.num, 4, window+noticeTimeout)
	if want := `2 new messages on localhost.`; m.Text != want {
		t.Errorf("folded notice of two senders %q, want %q", m.Text, want)
	}
	// four notices today: XMPPD_NOTICES_PER_DAY=4 stops the fifth
	send(t, a, to, "six")
	rcv.None(t, bob.num, 4, time.Second)
	if n := stored(t, s, bob.num); n != 6 {
		t.Errorf("%d stored, want 6", n)
	}
	ids := map[string]bool{}
	for _, m := range rcv.To(bob.num) {
		if ids[m.ID] {
			t.Errorf("two notices with id %s", m.ID)
		}
		ids[m.ID] = true
	}
}

// No notice goes to a receiver who is online: one with a session that
// has not sent presence gets the message stored, and no SMS.
func testOnlineReceiver(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	b := s.login(t, bob, "quiet") // bound, no initial presence
	send(t, a, bob.bare(), "while connected")
	if n := stored(t, s, bob.num); n != 1 {
		t.Fatalf("%d stored for a receiver without available resource, want 1", n)
	}
	rcv.None(t, bob.num, 0, time.Second)
	msgs := comeOnline(t, b)
	if len(msgs) != 1 || msgs[0].Body != "while connected" || msgs[0].DelayFrom != domain {
		t.Errorf("delivered %+v", msgs)
	}
	// available now: straight through, no stamp, nothing stored
	send(t, a, bob.bare(), "live")
	e := b.Expect("the live message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
	if d := delayedOf(t, e); d.Body != "live" || d.StampString != "" {
		t.Errorf("live message %+v", d)
	}
	waitFor(t, "the delivered message to be removed", func() bool { return stored(t, s, bob.num) == 0 })
	rcv.None(t, bob.num, 0, 0)
}

// A sender can cause notices to two never-claimed numbers a day here; the
// third still has the message stored, and the sender learns no SMS went.
func testNewNumbersCap(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	dave := s.newUser(t)
	d := s.login(t, dave, "x")
	n1, n2, n3 := s.newNumber(), s.newNumber(), s.newNumber()
	send(t, d, n1+"@"+domain, "hi 1")
	send(t, d, n2+"@"+domain, "hi 2")
	send(t, d, n1+"@"+domain, "hi 1 again") // the same number again is not a new one
	e := sendRefused(t, d, n3+"@"+domain, "hi 3")
	se := wantError(t, e, "cancel", "policy-violation")
	_ = se
	if !strings.Contains(e.Inner, "no SMS was sent") {
		t.Errorf("policy-violation without the reason: %v", e)
	}
	if n := stored(t, s, n3); n != 1 {
		t.Errorf("%d stored for the number over the cap, want 1", n)
	}
	if acct, err := s.d.DB.Account(context.Background(), auth.Number(n3)); err != nil || acct.State != auth.StateUnclaimed {
		t.Errorf("account over the cap %+v %v, want unclaimed", acct, err)
	}
	rcv.Wait(t, n1, 1, noticeTimeout)
	rcv.Wait(t, n2, 1, noticeTimeout)
	rcv.None(t, n3, 0, time.Second)
	// active receivers are not new numbers: no cap
	bob := s.activeUser(t)
	send(t, d, bob.bare(), "to an old friend")
	rcv.Wait(t, bob.num, 1, noticeTimeout)
}

// A full store answers resource-constraint; nothing is dropped silently.
func testOfflineLimit(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	for i := 1; i <= 6; i++ {
		send(t, a, bob.bare(), fmt.Sprint("m", i))
	}
	e := sendRefused(t, a, bob.bare(), "m7")
	wantError(t, e, "wait", "resource-constraint")
	b := s.login(t, bob, "y")
	if got := bodies(comeOnline(t, b)); fmt.Sprint(got) != "[m1 m2 m3 m4 m5 m6]" {
		t.Errorf("delivered %q", got)
	}
}

// Headline, groupchat, error and body-less messages are not stored.
func testNotStored(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	to := bob.bare()
	a.Send(`<message type='headline' to='` + to + `'><body>news</body></message>`)
	a.Send(`<message type='error' to='` + to + `'><body>err</body><error type='cancel'><item-not-found xmlns='` + nsStanzas + `'/></error></message>`)
	a.Send(`<message type='chat' to='` + to + `'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	a.Send(`<message to='` + to + `'><received xmlns='urn:xmpp:receipts' id='r1'/></message>`)
	id := nextID("gc")
	a.Send(`<message type='groupchat' id='` + id + `' to='` + to + `'><body>room</body></message>`)
	e := a.Expect("groupchat error", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
	wantError(t, e, "cancel", "service-unavailable")
	quiet(t, a, "nothing else comes back")
	if n := stored(t, s, bob.num); n != 0 {
		t.Errorf("%d stored, want none", n)
	}
	rcv.None(t, bob.num, 0, 500*time.Millisecond)
}

// Receipts (XEP-0184) and chat states (XEP-0085) pass through to an
// online receiver.
func testPassThrough(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "x")
	b := s.online(t, bob, "y")
	a.Send(`<message type='chat' id='cs1' to='` + bob.bare() + `'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	e := b.Expect("chat state", func(e xmpptest.Elem) bool { return e.Attr("id") == "cs1" })
	if !strings.Contains(e.Inner, "composing") {
		t.Errorf("chat state %v", e)
	}
	a.Send(`<message type='chat' id='rq1' to='` + bob.bare() + `'><body>ack me</body><request xmlns='urn:xmpp:receipts'/></message>`)
	e = b.Expect("receipt request", func(e xmpptest.Elem) bool { return e.Attr("id") == "rq1" })
	if !strings.Contains(e.Inner, "urn:xmpp:receipts") {
		t.Errorf("receipt request %v", e)
	}
	b.Send(`<message id='rc1' to='` + a.JID + `'><received xmlns='urn:xmpp:receipts' id='rq1'/></message>`)
	e = a.Expect("receipt", func(e xmpptest.Elem) bool { return e.Attr("id") == "rc1" })
	if !strings.Contains(e.Inner, "received") {
		t.Errorf("receipt %v", e)
	}
}

// A landline takes no SMS: with the webhook gateway (no calls) the message
// is stored without a notice, and the sender is told.
func testLandline(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	alice := s.newUser(t)
	a := s.login(t, alice, "x")
	landline := landlineNumber(s)
	e := sendRefused(t, a, landline+"@"+domain, "ring ring")
	wantError(t, e, "cancel", "recipient-unavailable")
	if !strings.Contains(e.Inner, "landline") || !strings.Contains(e.Inner, "no SMS was sent") {
		t.Errorf("landline error without the reason: %v", e)
	}
	if n := stored(t, s, landline); n != 1 {
		t.Errorf("%d stored for the landline, want 1", n)
	}
	rcv.None(t, landline, 0, time.Second)
}

// landlineNumber is a Seoul fixed line nobody used yet.
func landlineNumber(s *daemonUnderTest) string {
	return fmt.Sprintf("+822310%05d", s.seq.Add(1))
}

// TestOfflineVoice: with the twilio gateway a landline gets the notice as
// a call that reads it out (Calls API, <Say>), and an unclaimed account
// made by a message is released, with its messages, after
// XMPPD_UNCLAIMED_ACCOUNT_TTL; previews can be switched off.
func TestOfflineVoice(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			ttl := 4 * time.Second
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_SMS_GATEWAY":           "twilio",
				"XMPPD_TWILIO_ACCOUNT_SID":    "AC123",
				"XMPPD_TWILIO_AUTH_TOKEN":     "secret-token",
				"XMPPD_TWILIO_FROM":           "+15005550006",
				"XMPPD_TWILIO_BASE_URL":       rcv.URL,
				"XMPPD_NOTICE_PREVIEW":        "false",
				"XMPPD_UNCLAIMED_ACCOUNT_TTL": ttl.String(),
			}))
			alice := s.newUser(t)
			a := s.login(t, alice, "x") // logged in: active, never released

			landline := landlineNumber(s)
			send(t, a, landline+"@"+domain, "ring ring")
			call := rcv.Wait(t, landline, 1, noticeTimeout)
			// The text read twice, the password spelled (sms.VoiceTwiML).
			say := `<Say voice="Polly.Joanna" language="en-US">New message from ` + regexp.QuoteMeta(alice.num) +
				` on localhost\. Log in with your phone number and password <break time="700ms"/>` +
				`((<break time="400ms"/>)?(capital )?<say-as interpret-as="characters">[A-Za-z0-9]</say-as>){10,}` +
				`<break time="700ms"/>\.</Say>`
			re := regexp.MustCompile(`^<Response><Pause length="1"/>(` + say + `)<Pause length="2"/>(` + say + `)</Response>$`)
			m := re.FindStringSubmatch(call.Twiml)
			if !call.Call || m == nil || m[1] != m[5] { // groups 1 and 5: the two readings
				t.Errorf("call to a landline: %+v", call)
			}

			mobile := s.newNumber()
			send(t, a, mobile+"@"+domain, "secret words")
			sms := rcv.Wait(t, mobile, 1, noticeTimeout)
			re = regexp.MustCompile(`^New message from ` + regexp.QuoteMeta(alice.num) +
				` on localhost\. Log in with your phone number and password [A-Za-z0-9]+, or tap ` + loginLinkRE + `$`)
			if sms.Call || !re.MatchString(sms.Text) || strings.Contains(sms.Text, "secret") {
				t.Errorf("SMS without preview: %+v", sms)
			}

			// Both accounts were made by the messages; touched by the last
			// one, they go after the TTL with what is stored for them.
			time.Sleep(ttl / 2)
			send(t, a, mobile+"@"+domain, "keep it a while")
			waitForLong(t, 3*ttl, "the landline's account to be released", func() bool {
				_, err := s.d.DB.Account(context.Background(), auth.Number(landline))
				return errors.Is(err, auth.ErrNotFound)
			})
			if _, err := s.d.DB.Account(context.Background(), auth.Number(mobile)); err != nil {
				t.Errorf("the account touched later went with the first: %v", err)
			}
			if n := stored(t, s, landline); n != 0 {
				t.Errorf("%d messages left of a released account", n)
			}
			waitForLong(t, 3*ttl, "the mobile's account to be released", func() bool {
				_, err := s.d.DB.Account(context.Background(), auth.Number(mobile))
				return errors.Is(err, auth.ErrNotFound)
			})
			if n := stored(t, s, mobile); n != 0 {
				t.Errorf("%d messages left of a released account", n)
			}
			if _, err := s.d.DB.Account(context.Background(), auth.Number(alice.num)); err != nil {
				t.Errorf("an active account was released: %v", err)
			}
		})
	}
}

func waitForLong(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !f(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v in vain for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stored messages are removed only once the client showed it processed
// them, by answering the server's ping that follows them: one that gets
// them but disconnects without answering gets them all again at its next
// login; one that answers gets them once. Among them are messages big
// enough that they come in several chunks, each confirmed on its own.
func testRemovedWhenProcessed(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.activeUser(t)
	a := s.login(t, alice, "x")
	big := strings.Repeat("b", 100_000)
	want := []string{"one", "two", "three " + big, "four " + big, "five " + big, "six"}
	for _, b := range want {
		send(t, a, bob.bare(), b)
	}
	if n := stored(t, s, bob.num); n != len(want) {
		t.Fatalf("%d stored, want %d", n, len(want))
	}
	bobJID, _ := auth.CanonicalJID(auth.Number(bob.num), domain)
	gone := func() bool { return len(s.d.Server.Sessions(bobJID)) == 0 }

	// Gets the first chunk and its ping, answers nothing, goes away.
	b := s.login(t, bob, "crashy")
	b.Send(`<presence/>`)
	var got []string
	ping := b.Expect("the server's ping after the first chunk", func(e xmpptest.Elem) bool {
		if e.XMLName.Local == "message" {
			got = append(got, delayedOf(t, e).Body)
		}
		return isServerPing(e)
	})
	if len(got) == 0 || len(got) >= len(want) || fmt.Sprint(got) != fmt.Sprint(want[:len(got)]) {
		t.Fatalf("before the first ping: %d messages %.40q, want the first few of %d, in order", len(got), got, len(want))
	}
	t.Logf("the first chunk: %d messages, then the ping %s", len(got), ping.Attr("id"))
	b.Conn.Close()
	waitFor(t, "bob's session to end", gone)
	if n := stored(t, s, bob.num); n != len(want) {
		t.Fatalf("%d stored after a session that never answered, want all %d", n, len(want))
	}

	// Next login: everything again, answered chunk by chunk.
	b = s.login(t, bob, "careful")
	b.Send(`<presence/>`)
	got = nil
	for len(got) < len(want) {
		e := b.Next()
		switch {
		case e.XMLName.Local == "message":
			got = append(got, delayedOf(t, e).Body)
		case isServerPing(e):
			answerPing(b, e)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the second login got %.40q, want all %d in order", got, len(want))
	}
	// the last chunk's ping, answered, removes the rest
	answerPing(b, b.Expect("the ping after the last chunk", isServerPing))
	waitFor(t, "the confirmed messages to be removed", func() bool { return stored(t, s, bob.num) == 0 })
	b.Send(`</stream:stream>`)
	b.Conn.Close()
	waitFor(t, "bob's session to end", gone)

	// And a third login gets nothing.
	b = s.login(t, bob, "again")
	if msgs := comeOnline(t, b); len(msgs) != 0 {
		t.Fatalf("after confirming, the next login got %d messages again", len(msgs))
	}
}
