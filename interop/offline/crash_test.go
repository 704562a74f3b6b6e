package offline

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/internal/pgtest"
	"dialtone/internal/xmpptest"
)

// What "nothing twice" allows (issue 4: "nothing twice except a message
// whose own delivery the kill cut short"), precisely:
//
//   - A kill while the sender streams to offline receivers cuts no
//     delivery short (nobody receives): after the restart every message
//     comes exactly once.
//   - A kill while stored messages are written to their receiver may cut
//     short the delivery of those the receiver read but whose removal
//     from the store had not been committed when the server died (a
//     message is removed only once the receiver answered the ping that
//     follows its chunk, which proves the client processed it; the answer
//     and the removal cannot be one atomic step). Such a message may come
//     again after the restart. The test reads the store between the kill
//     and the restart and allows a second copy only of a message the
//     store still held then; a message that was removed must never come
//     again, and must have reached the receiver. (offline.Queue hands
//     over up to 256 KiB, then pings, so one kill can bring that much
//     again, plus what the receiver had read of the next chunk; the test
//     logs how many.)
//   - SMS: the webhook may get an SMS again after the restart, with the
//     same id (SPEC.md "SMS gateway webhook"; the receiver deduplicates),
//     but each stored message is told by exactly one notice: the messages
//     the notices to a receiver tell of (1 for a quoted one, N for "N new
//     messages") add up to the number stored for it.

// crashEnv is the configuration of the crash tests: a notice window short
// enough that folded notices go out during the stream (A streams for more
// than a second before the kill) and one is likely open at the kill, and
// no daily notice cap in the way.
var crashEnv = map[string]string{
	"XMPPD_NOTICE_WINDOW":   "400ms",
	"XMPPD_NOTICES_PER_DAY": "1000",
	// A fills B's store with 6 MB as fast as it can; at the default rate
	// that alone would take a minute and a half.
	"XMPPD_C2S_RATE": "0",
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	xmppd, xmppctl := build(t, t.TempDir())
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Run("while sending", func(t *testing.T) {
				crashWhileSending(t, xmppd, xmppctl, storeURL(t, store), false)
			})
			t.Run("while sending, SMS gateway slow and down", func(t *testing.T) {
				crashWhileSending(t, xmppd, xmppctl, storeURL(t, store), true)
			})
			t.Run("while delivering", func(t *testing.T) {
				crashWhileDelivering(t, xmppd, xmppctl, storeURL(t, store))
			})
		})
	}
}

// storeURL is XMPPD_DATABASE_URL for a fresh store: "" (SQLite in the data
// dir) or a new PostgreSQL database.
func storeURL(t *testing.T, store string) string {
	if store == "postgres" {
		return pgtest.NewDatabase(t, pgtest.URL(t))
	}
	return ""
}

// receiverOf says where message n of the stream goes: odd numbers to B,
// even ones to C.
func receiverOf(n int) string {
	if n%2 == 1 {
		return numberB
	}
	return numberC
}

// Bounds of the stream: A writes a message every pace at most, keeps at
// most window messages beyond the last answered ping, pings after every
// pingEvery messages, and the server is killed once killAt messages were
// confirmed; total is never reached.
const (
	streamTotal     = 1600
	streamPace      = 5 * time.Millisecond
	streamWindow    = 64
	streamPingEvery = 8
	streamKillAt    = 240
)

// stream is A writing numbered messages to B and C over its TLS stream,
// interleaved with pings, and reading the answers.
type stream struct {
	c *xmpptest.Client

	mu        sync.Mutex
	cond      *sync.Cond
	sent      int            // the highest message number written to the connection
	mark      int            // the highest message number sent before an answered ping
	pongs     int            // answered pings
	pingAfter map[string]int // ping id → the message number written just before it
	errs      []string       // error stanzas that came back
	others    []string       // anything else that came back
	stopped   bool           // the writer is to stop
	readEnd   error          // why the reader stopped
	readDone  chan struct{}
	writeEnd  error
	writeDone chan struct{}
}

func startStream(c *xmpptest.Client) *stream {
	s := &stream{c: c, pingAfter: map[string]int{}, readDone: make(chan struct{}), writeDone: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.write()
	go s.read()
	return s
}

func (s *stream) write() {
	defer close(s.writeDone)
	var buf []byte
	for n := 1; n <= streamTotal; n++ {
		s.mu.Lock()
		for n > s.mark+streamWindow && !s.stopped && s.readEnd == nil {
			s.cond.Wait()
		}
		stop := s.stopped || s.readEnd != nil
		s.mu.Unlock()
		if stop {
			return
		}
		buf = fmt.Appendf(buf[:0], `<message to='%s@%s' type='chat' id='m%d'><body>%s</body></message>`,
			receiverOf(n), domain, n, body(n, ""))
		if n%streamPingEvery == 0 {
			id := "p" + strconv.Itoa(n)
			s.mu.Lock()
			s.pingAfter[id] = n
			s.mu.Unlock()
			buf = fmt.Appendf(buf, `<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id, domain)
		}
		s.c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.c.Conn.Write(buf); err != nil {
			s.mu.Lock()
			s.writeEnd = err
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.sent = n
		s.mu.Unlock()
		time.Sleep(streamPace)
	}
}

func (s *stream) read() {
	defer close(s.readDone)
	for {
		e, err := s.c.TryNext(15 * time.Second)
		s.mu.Lock()
		switch {
		case err != nil:
			s.readEnd = err
		case e.XMLName.Local == "iq" && e.Attr("type") == "result" && strings.HasPrefix(e.Attr("id"), "p"):
			if n, ok := s.pingAfter[e.Attr("id")]; ok {
				s.mark = max(s.mark, n)
				s.pongs++
			} else {
				s.others = append(s.others, e.String())
			}
		case e.XMLName.Local == "message" && e.Attr("type") == "error":
			s.errs = append(s.errs, e.String())
		default:
			s.others = append(s.others, e.String())
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (s *stream) state() (sent, mark, pongs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.mark, s.pongs
}

func (s *stream) stop() {
	s.mu.Lock()
	s.stopped = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// upTo returns the numbers up to m that go to receiver.
func upTo(m int, receiver string) []int {
	var out []int
	for n := 1; n <= m; n++ {
		if receiverOf(n) == receiver {
			out = append(out, n)
		}
	}
	return out
}

// missing returns the members of want that are not in have.
func missing(want, have []int) []int {
	set := map[int]bool{}
	for _, n := range have {
		set[n] = true
	}
	var out []int
	for _, n := range want {
		if !set[n] {
			out = append(out, n)
		}
	}
	return out
}

// ascendingOnce reports the first place where ns is not strictly
// increasing (a repeat or a message out of order), or "".
func ascendingOnce(ns []int) string {
	for i := 1; i < len(ns); i++ {
		if ns[i] == ns[i-1] {
			return fmt.Sprintf("#%d twice (at %d)", ns[i], i)
		}
		if ns[i] < ns[i-1] {
			return fmt.Sprintf("#%d after #%d (at %d): not oldest first", ns[i], ns[i-1], i)
		}
	}
	return ""
}

func numbers(msgs []got) []int {
	out := make([]int, len(msgs))
	for i, m := range msgs {
		out[i] = m.N
	}
	return out
}

// short shows a list of numbers in a failure, cut when long.
func short(ns []int) string {
	if len(ns) > 20 {
		return fmt.Sprintf("%v … (%d in all)", ns[:20], len(ns))
	}
	return fmt.Sprint(ns)
}

// crashWhileSending: A streams messages to B (an offline account) and C (a
// latent number), the server is killed mid-stream, and after a restart on
// the same store every message sent before an answered ping is delivered
// once, oldest first, and told by notices, none lost. With gatewayDown the
// webhook holds the first SMS without an answer and refuses the others
// until the kill: routing must not wait for it, and the notices then wait
// in the outbox at the kill and must all arrive after the restart.
func crashWhileSending(t *testing.T, xmppd, xmppctl, dbURL string, gatewayDown bool) {
	began := time.Now()
	wh := newWebhook(t)
	if gatewayDown {
		wh.down = 1
	}
	s := newServer(t, xmppd, xmppctl, dbURL, wh, crashEnv)
	s.start()
	pwA := s.account(numberA)
	pwB := s.account(numberB)
	s.activate(numberB, pwB)

	a := xmpptest.Login(t, s.addr(), numberA, pwA, "stream")
	st := startStream(a)
	// The kill comes once killAt messages were confirmed and A has written
	// more since (messages in flight).
	var sentBefore, markBefore int
	if !waitFor(30*time.Second, func() bool {
		sentBefore, markBefore, _ = st.state()
		return markBefore >= streamKillAt && sentBefore > markBefore
	}) {
		sent, mark, pongs := st.state()
		st.mu.Lock()
		errs, end := st.errs, st.readEnd
		st.mu.Unlock()
		t.Fatalf("after 30 s only %d messages confirmed (%d sent, %d pings answered, reader: %v); errors back: %d, first: %v",
			mark, sent, pongs, end, len(errs), firstOf(errs))
	}
	s.kill()
	killedAt := time.Now()
	sentAfter, _, _ := st.state()
	st.stop()
	select {
	case <-st.readDone:
	case <-time.After(20 * time.Second):
		t.Fatal("A's stream did not end within 20 s of the kill")
	}
	<-st.writeDone
	sent, mark, pongs := st.state()
	st.mu.Lock()
	errs, others, readEnd, writeEnd := st.errs, st.others, st.readEnd, st.writeEnd
	st.mu.Unlock()
	t.Logf("killed with %d…%d messages written, %d confirmed by an answered ping (%d answered in all, the last read after the kill: #%d); A's stream ended with read %v, write %v",
		sentBefore, sentAfter, markBefore, pongs, mark, readEnd, writeEnd)
	// "while A is still sending": the writer was ahead of the answered
	// pings and far from its end.
	if sentAfter <= markBefore || sent >= streamTotal {
		t.Fatalf("the kill did not come mid-stream: %d written, %d confirmed, of %d", sentAfter, markBefore, streamTotal)
	}
	for _, e := range errs {
		t.Errorf("A got an error back: %s", e)
	}
	for _, e := range others {
		t.Errorf("A got something unexpected: %s", e)
	}
	sms1 := wh.all()

	// The store between the kill and the restart.
	store := s.readStore(numberB, numberC)
	stored := map[string][]int{numberB: store.messages[numberB], numberC: store.messages[numberC]}
	for _, r := range []string{numberB, numberC} {
		if bad := ascendingOnce(stored[r]); bad != "" {
			t.Errorf("the store holds for %s %s", r, bad)
		}
		if lost := missing(upTo(mark, r), stored[r]); len(lost) > 0 {
			t.Errorf("messages to %s sent before an answered ping are not in the store after the kill: %s", r, short(lost))
		}
		if len(stored[r]) > 0 && stored[r][len(stored[r])-1] > sent {
			t.Errorf("the store holds for %s message #%d, never sent (last sent #%d)", r, stored[r][len(stored[r])-1], sent)
		}
	}
	var pendingIDs []string
	pendingTo := map[string]int{}
	for _, p := range store.pending {
		if p.Purpose != "notice" || (p.To != numberB && p.To != numberC) {
			t.Errorf("unexpected SMS in the outbox after the kill: %s to %s, purpose %s", p.ID, p.To, p.Purpose)
		}
		pendingIDs = append(pendingIDs, p.ID)
		pendingTo[p.To]++
	}
	t.Logf("after the kill: stored %d for B, %d for C (confirmed: %d, %d); %d SMS had reached the webhook, %d waited in the outbox",
		len(stored[numberB]), len(stored[numberC]), len(upTo(mark, numberB)), len(upTo(mark, numberC)), len(sms1), len(pendingIDs))
	if gatewayDown {
		// Nothing was accepted, so the notices queued with the messages
		// (the first to B and to C at least) wait in the outbox, those
		// tried (the one held unanswered included) and refused too.
		refused := wh.refusedIDs()
		t.Logf("the gateway held or refused %d SMS before the kill", len(refused))
		if len(sms1) > 0 || len(refused) == 0 {
			t.Errorf("with the gateway down %d SMS were accepted and %d refused before the kill; want none accepted, some tried", len(sms1), len(refused))
		}
		if pendingTo[numberB] == 0 || pendingTo[numberC] == 0 {
			t.Errorf("with the gateway down the outbox holds %d notices to B and %d to C after the kill; want their first notices at least", pendingTo[numberB], pendingTo[numberC])
		}
		if lost := missingStrings(refused, pendingIDs); len(lost) > 0 {
			t.Errorf("SMS refused by the gateway are no longer in the outbox after the kill: %v", lost)
		}
	}

	// Restart on the same store: the pending SMS go out, and the notices
	// tell of every stored message, each counted once.
	s.start()
	restarted := time.Now()
	complete := func() bool {
		for _, id := range pendingIDs {
			if !wh.has(id) {
				return false
			}
		}
		for _, r := range []string{numberB, numberC} {
			c := 0
			for _, m := range wh.to(r, "notice") {
				n, _ := parseNotice(m) // judged by checkNotices below
				c += n.Count
			}
			if c < len(stored[r]) {
				return false
			}
		}
		return true
	}
	if !waitFor(20*time.Second, complete) {
		for _, id := range pendingIDs {
			if !wh.has(id) {
				t.Errorf("SMS %s, in the outbox at the kill, did not reach the webhook within 20 s of the restart", id)
			}
		}
	}
	t.Logf("notices complete %.1f s after the restart", time.Since(restarted).Seconds())
	checkNotices(t, wh, numberB, stored[numberB], false)
	passwordC := checkNotices(t, wh, numberC, stored[numberC], true)
	for _, m := range wh.all() {
		if m.Purpose != "notice" || m.To != numberB && m.To != numberC {
			t.Errorf("unexpected SMS: %+v", m)
		}
	}
	smsBeforeLogin := len(wh.all())
	if st := s.accountShow(numberC)["state"]; st != "unclaimed" {
		t.Errorf("C is %q after messages were stored for it, want unclaimed", st)
	}

	// B logs in and gets everything, once, oldest first, with delay stamps.
	b := xmpptest.Login(t, s.addr(), numberB, pwB, "after")
	b.Send(`<presence/>`)
	gotB := collect(t, b, 1, len(stored[numberB]), 20*time.Second)
	checkDelivered(t, "B", gotB, stored[numberB], upTo(mark, numberB), numberB)
	checkStamps(t, "B", gotB, began, killedAt)

	// C logs in with the password of its notice and gets its messages.
	if passwordC == "" {
		t.Fatal("no password for C in its notices; cannot log in as C")
	}
	c := xmpptest.Dial(t, s.addr())
	c.Open(domain)
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, numberC, passwordC); cond != "" {
		t.Fatalf("C cannot log in with the password of its notice: %s", cond)
	}
	c.Bind("after")
	c.Send(`<presence/>`)
	gotC := collect(t, c, 1, len(stored[numberC]), 20*time.Second)
	checkDelivered(t, "C", gotC, stored[numberC], upTo(mark, numberC), numberC)
	checkStamps(t, "C", gotC, began, killedAt)

	// No notice to a receiver who is online (and none was due): once
	// their notice windows are gone (dropped when they came online), none
	// can close into a notice, and a test SMS queued after that arrives
	// after anything queued before it.
	s.noNoticeWindows(numberB, numberC)
	s.smsBarrier(barrierNumber)
	if got := wh.all()[smsBeforeLogin:]; len(got) != 1 || got[0].To != barrierNumber {
		t.Errorf("SMS after B and C logged in: %+v, want only the test SMS to %s", got, barrierNumber)
	}
	nB, nC := len(wh.notices(t, numberB)), len(wh.notices(t, numberC))
	s.stop()
	wh.check(t)
	t.Logf("B got %d, C got %d; notices: %d to B, %d to C; %d SMS ids came to the webhook more than once (allowed, same id); %.1f s in all",
		len(gotB), len(gotC), nB, nC, wh.duplicates(), time.Since(began).Seconds())
}

// missingStrings returns the members of want that are not in have.
func missingStrings(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[0]
}

// checkNotices checks the notices to receiver (SPEC.md "SMS texts") against
// the messages stored for it: they tell of each stored message exactly
// once (the first notices and the counts of the folded ones add up), the
// first quotes its first message, all name A, and the first notice of an
// unclaimed account (and only that one) carries a password, which it
// returns.
func checkNotices(t *testing.T, wh *webhook, receiver string, stored []int, unclaimed bool) (password string) {
	t.Helper()
	ns := wh.notices(t, receiver)
	if c := counted(ns); c != len(stored) {
		t.Errorf("notices to %s tell of %d messages, %d were stored:\n%s", receiver, c, len(stored), noticeList(ns))
	}
	if len(stored) == 0 {
		return ""
	}
	first := body(stored[0], "")
	var quoted, withPassword []notice
	for _, n := range ns {
		if n.Sender != numberA {
			t.Errorf("notice to %s names sender %s, want %s: %q", receiver, n.Sender, numberA, n.Text)
		}
		if n.Preview == first {
			quoted = append(quoted, n)
		}
		if n.Password != "" {
			withPassword = append(withPassword, n)
		}
		if n.Preview != "" {
			if _, err := numberOfBody(n.Preview); err != nil {
				t.Errorf("notice to %s quotes %q, no message of the test", receiver, n.Preview)
			}
		}
	}
	if len(quoted) != 1 {
		t.Errorf("%d notices to %s quote its first message %q, want 1:\n%s", len(quoted), receiver, first, noticeList(ns))
	}
	switch {
	case !unclaimed && len(withPassword) > 0:
		t.Errorf("a notice to %s, an active account, carries a password: %q", receiver, withPassword[0].Text)
	case unclaimed && len(withPassword) != 1:
		t.Errorf("%d notices to %s (unclaimed) carry a password, want exactly its first:\n%s", len(withPassword), receiver, noticeList(ns))
	case unclaimed && withPassword[0].Preview != first:
		t.Errorf("the notice with the password for %s quotes %q, want its first message %q", receiver, withPassword[0].Preview, first)
	}
	if unclaimed && len(withPassword) > 0 {
		password = withPassword[0].Password
	}
	return password
}

func noticeList(ns []notice) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "  run %d, %s: %s\n", n.Run, n.At.Format("15:04:05.000"), n.Text)
	}
	return b.String()
}

// checkDelivered checks what a receiver got after the restart: exactly
// what the store held (each once, oldest first), which includes every
// confirmed message, from A to the receiver as chat.
func checkDelivered(t *testing.T, who string, msgs []got, stored, confirmed []int, receiver string) {
	t.Helper()
	ns := numbers(msgs)
	if bad := ascendingOnce(ns); bad != "" {
		t.Errorf("%s got %s", who, bad)
	}
	if lost := missing(confirmed, ns); len(lost) > 0 {
		t.Errorf("%s never got messages sent before an answered ping: %s", who, short(lost))
	}
	if !slices.Equal(ns, stored) {
		t.Errorf("%s got %d messages %s; the store held %d: %s", who, len(ns), short(ns), len(stored), short(stored))
	}
	for _, m := range msgs {
		if bare(m.From) != numberA+"@"+domain || bare(m.To) != receiver+"@"+domain || m.Type != "chat" {
			t.Errorf("%s: message #%d from %q to %q type %q; want from %s, to %s, chat", who, m.N, m.From, m.To, m.Type, numberA, receiver)
			break
		}
	}
}

// Sizes of the delivery crash: deliverTotal messages with a body of about
// deliverPad bytes, more than the kernel's socket buffers hold on
// loopback (several MiB), so that the server still writes when it is
// killed; the kill comes once the receiver read deliverKillAfter and then
// stopped reading for a moment.
const (
	deliverTotal     = 400
	deliverPad       = 16000
	deliverKillAfter = 40
)

// crashWhileDelivering: B has hundreds of stored messages; the server is
// killed while it writes them to B; after the restart B gets the rest,
// oldest first, and nothing that had been written and removed comes twice.
func crashWhileDelivering(t *testing.T, xmppd, xmppctl, dbURL string) {
	began := time.Now()
	wh := newWebhook(t)
	s := newServer(t, xmppd, xmppctl, dbURL, wh, crashEnv)
	s.start()
	pwA := s.account(numberA)
	pwB := s.account(numberB)
	s.activate(numberB, pwB)

	// A stores deliverTotal messages for B, all confirmed.
	a := xmpptest.Login(t, s.addr(), numberA, pwA, "fill")
	pad := " " + strings.Repeat("x", deliverPad)
	var buf strings.Builder
	for n := 1; n <= deliverTotal; n++ {
		fmt.Fprintf(&buf, `<message to='%s@%s' type='chat' id='m%d'><body>%s</body></message>`, numberB, domain, n, body(n, pad))
		if n%25 == 0 {
			fmt.Fprintf(&buf, `<iq type='get' id='fill%d' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, n, domain)
			a.Send(buf.String())
			buf.Reset()
		}
	}
	for answered := 0; answered < deliverTotal/25; {
		e, err := a.TryNext(20 * time.Second)
		if err != nil {
			t.Fatalf("A storing messages for B: %d of %d pings answered: %v", answered, deliverTotal/25, err)
		}
		switch {
		case e.XMLName.Local == "iq" && strings.HasPrefix(e.Attr("id"), "fill"):
			answered++
		default:
			t.Fatalf("A got back %v while storing messages for B", e)
		}
	}
	filled := time.Now()
	t.Logf("%d messages stored for B in %.1f s", deliverTotal, filled.Sub(began).Seconds())
	if got := s.accountShow(numberB)["stored_messages"]; got != strconv.Itoa(deliverTotal) {
		t.Fatalf("xmppctl account show B: stored_messages %s, want %d", got, deliverTotal)
	}

	// B logs in on a socket with a small receive buffer, reads a few, stops
	// reading, and the server dies while its writes wait for B.
	b := xmpptest.Dial(t, s.addr())
	if tc, ok := b.Conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(128 << 10)
	}
	b.Open(domain)
	b.StartTLS()
	b.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := b.Auth(sasl.ScramSha256, numberB, pwB); cond != "" {
		t.Fatalf("B login: %s", cond)
	}
	b.Bind("first")
	b.Send(`<presence/>`)
	var first []got
	readOne := func(d time.Duration) error {
		e, err := b.TryNext(d)
		if err != nil {
			return err
		}
		switch {
		case e.XMLName.Local == "presence" && bare(e.Attr("from")) == bare(b.JID):
			return nil // its own presence
		case answeredPing(b, e):
			return nil // the server confirms what B read so far
		case e.XMLName.Local != "message":
			t.Errorf("B: unexpected %v", e)
			return nil
		}
		g, err := parseGot(e)
		if err != nil {
			t.Errorf("B: %v in %v", err, e)
		}
		first = append(first, g)
		return nil
	}
	for len(first) < deliverKillAfter {
		if err := readOne(10 * time.Second); err != nil {
			t.Fatalf("B: reading stored messages (%d so far): %v", len(first), err)
		}
	}
	// B stops reading: the buffers fill and the server's writes wait.
	time.Sleep(300 * time.Millisecond)
	s.kill()
	killedAt := time.Now()
	readBeforeKill := len(first)
	// What the server had written before it died still arrives; then the
	// stream ends (no </stream:stream>: the process is gone).
	var end error
	for end == nil {
		end = readOne(10 * time.Second)
	}
	var ne net.Error
	if errors.As(end, &ne) && ne.Timeout() {
		t.Fatalf("B's stream neither ended nor brought anything for 10 s after the kill")
	}
	t.Logf("B read %d messages before the kill, %d in all before its stream ended (%v)", readBeforeKill, len(first), end)
	if len(first) >= deliverTotal {
		t.Fatalf("all %d messages had been written to B before the kill: the test did not kill during delivery", deliverTotal)
	}

	store := s.readStore(numberB)
	remaining := store.messages[numberB]
	ns1 := numbers(first)
	all := make([]int, deliverTotal)
	for i := range all {
		all[i] = i + 1
	}
	if bad := ascendingOnce(ns1); bad != "" {
		t.Errorf("B's first session got %s", bad)
	}
	if bad := ascendingOnce(remaining); bad != "" {
		t.Errorf("the store holds for B %s", bad)
	}
	// Removed only after it was written: whatever left the store reached B.
	removed := missing(all, remaining)
	if lost := missing(removed, ns1); len(lost) > 0 {
		t.Errorf("messages removed from the store without reaching B: %s", short(lost))
	}
	// The window the kill cut short: read by B, not yet removed.
	cut := missing(ns1, removed)
	t.Logf("after the kill the store holds %d of %d for B; %d of them B had already read (written, removal not committed)",
		len(remaining), deliverTotal, len(cut))

	s.start()
	restarted := time.Now()
	b2 := xmpptest.Login(t, s.addr(), numberB, pwB, "second")
	b2.Send(`<presence/>`)
	second := collect(t, b2, 2, len(remaining), 20*time.Second)
	t.Logf("restarted %.1f s after the kill; the rest delivered %.1f s after the restart", restarted.Sub(killedAt).Seconds(), time.Since(restarted).Seconds())
	ns2 := numbers(second)
	if bad := ascendingOnce(ns2); bad != "" {
		t.Errorf("B's second session got %s", bad)
	}
	if !slices.Equal(ns2, remaining) {
		t.Errorf("after the restart B got %d messages %s; the store held %d: %s", len(ns2), short(ns2), len(remaining), short(remaining))
	}
	// Nothing lost: each message reached B in one session or the other.
	if lost := missing(all, append(slices.Clone(ns1), ns2...)); len(lost) > 0 {
		t.Errorf("B never got %s", short(lost))
	}
	// Nothing twice but what the kill cut short: a message B got in both
	// sessions must have been in the store still at the kill.
	twice := missing(ns2, missing(ns2, ns1)) // in both sessions
	if notCut := missing(twice, remaining); len(notCut) > 0 {
		t.Errorf("B got messages twice that had been written and removed before the kill: %s", short(notCut))
	}
	for _, m := range append(slices.Clone(first), second...) {
		if bare(m.From) != numberA+"@"+domain || m.Type != "chat" {
			t.Errorf("B: message #%d from %q type %q; want from %s, chat", m.N, m.From, m.Type, numberA)
			break
		}
	}
	checkStamps(t, "B (first session)", first, began, filled)
	checkStamps(t, "B (after the restart)", second, began, filled)
	s.stop()
	wh.check(t)
	t.Logf("B got %d before and %d after the restart; %d twice (each still stored at the kill); killed %.1f s in, %.1f s in all",
		len(first), len(second), len(twice), killedAt.Sub(began).Seconds(), time.Since(began).Seconds())
}
