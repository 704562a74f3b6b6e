package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/auth"
	"dialtone/internal/config"
	"dialtone/internal/daemon"
	"dialtone/internal/pgtest"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const domain = "localhost"

// Namespaces the assertions look for.
const (
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsRoster   = "jabber:iq:roster"
	nsBlocking = "urn:xmpp:blocking"
	nsBlockErr = "urn:xmpp:blocking:errors"
	nsDiscoInf = "http://jabber.org/protocol/disco#info"
	nsCaps     = "http://jabber.org/protocol/caps"
	nsVCard    = "vcard-temp"
	nsPrivate  = "jabber:iq:private"
	nsVersion  = "jabber:iq:version"
	nsPing     = "urn:xmpp:ping"
)

// backends are the stores the daemon runs on: the embedded SQLite and a
// fresh PostgreSQL database of the test binary's throwaway cluster.
var backends = []struct {
	name string
	url  func(t *testing.T) string // XMPPD_DATABASE_URL
}{
	{"sqlite", func(*testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string { return pgtest.NewDatabase(t, pgtest.URL(t)) }},
}

// TestDaemon starts the real daemon once per store and talks to it over
// real TLS sockets the way a client does. The subtests share the daemon
// but not accounts: each makes its own numbers. The last one stops the
// daemon (as SIGTERM does) and starts it again on the same data.
func TestDaemon(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			start := time.Now()
			// A port known in advance, so that the public URL (which
			// host-meta advertises) is where the listener is.
			httpAddr := "127.0.0.1:" + testbin.FreePort(t)
			env := map[string]string{
				"XMPPD_DOMAIN":              domain,
				"XMPPD_DATA_DIR":            t.TempDir(),
				"XMPPD_DATABASE_URL":        b.url(t),
				"XMPPD_C2S_ADDR":            "127.0.0.1:0",
				"XMPPD_C2S_DIRECT_TLS_ADDR": "127.0.0.1:0",
				"XMPPD_HTTP_ADDR":           httpAddr,
				"XMPPD_PUBLIC_URL":          "http://" + httpAddr,
				"XMPPD_S2S_ADDR":            "",
				"XMPPD_DEFAULT_REGION":      "KR",
				"XMPPD_LOG_LEVEL":           "debug",
			}
			env["XMPPD_ADMIN_SOCKET"] = filepath.Join(env["XMPPD_DATA_DIR"], "admin.sock")
			s := startDaemon(t, env)
			t.Logf("%s: daemon up in %v", b.name, time.Since(start).Round(time.Millisecond))

			t.Run("roster", func(t *testing.T) { testRoster(t, s) })
			t.Run("subscription", func(t *testing.T) { testSubscription(t, s) })
			t.Run("presence", func(t *testing.T) { testPresence(t, s) })
			t.Run("offline_subscribe", func(t *testing.T) { testOfflineSubscribe(t, s) })
			t.Run("national_form", func(t *testing.T) { testNationalForm(t, s) })
			t.Run("disco_caps", func(t *testing.T) { testDiscoCaps(t, s) })
			t.Run("version_ping", func(t *testing.T) { testVersionPing(t, s) })
			t.Run("vcard", func(t *testing.T) { testVCard(t, s) })
			t.Run("private", func(t *testing.T) { testPrivate(t, s) })
			t.Run("blocking", func(t *testing.T) { testBlocking(t, s) })
			t.Run("pep", func(t *testing.T) { testPEP(t, s) })
			t.Run("avatar", func(t *testing.T) { testAvatar(t, s) })
			t.Run("bookmarks", func(t *testing.T) { testBookmarks(t, s) })
			t.Run("routing_errors", func(t *testing.T) { testRoutingErrors(t, s) })
			t.Run("http", func(t *testing.T) { testHTTP(t, s) })
			t.Run("websocket", func(t *testing.T) { testWebSocket(t, s) })
			t.Run("sessions_per_account", func(t *testing.T) { testSessionsPerAccount(t, s) })
			t.Run("sm_hibernating_is_available", func(t *testing.T) { testHibernatingAvailable(t, s) })
			t.Run("archive", func(t *testing.T) { testArchive(t, s) })
			t.Run("shutdown_restart", func(t *testing.T) { testShutdownRestart(t, s) })
			t.Logf("%s: all in %v", b.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// --- the daemon under test ---------------------------------------------

// daemonUnderTest is the daemon of one store; restart replaces the running
// instance by a new one on the same configuration.
type daemonUnderTest struct {
	env map[string]string
	seq atomic.Int64 // numbers handed out, across restarts
	*instance
}

// instance is one daemon.New + Run.
type instance struct {
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	runErr error
	log    *lockedBuffer
}

// startDaemon builds the daemon from env with config.LoadFrom and runs it
// until the test ends (or Stop). Its log is shown when the test failed.
func startDaemon(t *testing.T, env map[string]string) *daemonUnderTest {
	t.Helper()
	s := &daemonUnderTest{env: env}
	s.instance = s.run(t)
	return s
}

func (s *daemonUnderTest) run(t *testing.T) *instance {
	t.Helper()
	cfg, err := config.LoadFrom(s.env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	in := &instance{log: &lockedBuffer{}, done: make(chan struct{})}
	in.d, err = daemon.New(context.Background(), cfg, cfg.Logger(in.log))
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		in.runErr = in.d.Run(ctx)
		close(in.done)
	}()
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", in.log.String())
		}
	})
	return in
}

// restart starts a new instance on the same data dir and database; the
// running one must have been stopped.
func (s *daemonUnderTest) restart(t *testing.T) {
	t.Helper()
	s.instance = s.run(t)
}

// Stop cancels Run's context, as SIGTERM does in cmd/xmppd, and returns
// what Run returned.
func (in *instance) Stop() error {
	in.cancel()
	select {
	case <-in.done:
		return in.runErr
	case <-time.After(30 * time.Second):
		return fmt.Errorf("Run did not return within 30s of the cancel")
	}
}

func (s *daemonUnderTest) c2s() string { return s.d.Addr("c2s") }

// user is an account: its canonical number and password.
type user struct{ num, pass string }

func (u user) bare() string { return u.num + "@" + domain }

// national is the number as written in Korea: 010-2000-0001.
func (u user) national() string {
	d := strings.TrimPrefix(u.num, "+82")
	return "0" + d[:2] + "-" + d[2:6] + "-" + d[6:]
}

// newUser makes an account on a fresh number the way xmppctl does: a
// generated password stored as SCRAM credentials.
func (s *daemonUnderTest) newUser(t *testing.T) user {
	t.Helper()
	num := s.newNumber()
	pass, err := auth.GeneratePassword(12)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.NewCredentials(pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.DB.SetCredentials(context.Background(), auth.Number(num), creds); err != nil {
		t.Fatal(err)
	}
	return user{num: num, pass: pass}
}

// newNumber returns a valid Korean mobile number nobody used yet (so a
// latent one when no account is made for it).
func (s *daemonUnderTest) newNumber() string {
	return fmt.Sprintf("+821020%06d", s.seq.Add(1))
}

func (s *daemonUnderTest) login(t *testing.T, u user, res string) *xmpptest.Client {
	t.Helper()
	c := xmpptest.Login(t, s.c2s(), u.num, u.pass, res)
	if want := u.bare() + "/" + res; c.JID != want {
		t.Fatalf("bound %q, want %q", c.JID, want)
	}
	return c
}

// online logs u in, fetches the roster (so that the session gets roster
// pushes) and sends initial presence.
func (s *daemonUnderTest) online(t *testing.T, u user, res string) *xmpptest.Client {
	t.Helper()
	c := s.login(t, u, res)
	r, _ := iq(c, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	mustResult(t, r)
	c.Available()
	return c
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// --- reading what comes back ---------------------------------------------

var ids atomic.Int64

func nextID(prefix string) string { return prefix + strconv.FormatInt(ids.Add(1), 10) }

// until reads elements until one satisfies f and returns it with the
// elements that came before it.
func until(c *xmpptest.Client, what string, f func(xmpptest.Elem) bool) (xmpptest.Elem, []xmpptest.Elem) {
	c.T.Helper()
	var before []xmpptest.Elem
	for i := 0; i < 50; i++ {
		e := c.Next()
		if f(e) {
			return e, before
		}
		before = append(before, e)
	}
	c.T.Fatalf("%s: never got %s; got %v", c.JID, what, before)
	return xmpptest.Elem{}, nil
}

// iq sends an iq (to "" means no 'to') and returns the answer with what
// arrived before it (roster pushes come before the result of the set).
func iq(c *xmpptest.Client, typ, to, payload string) (xmpptest.Elem, []xmpptest.Elem) {
	c.T.Helper()
	id := nextID("iq")
	toAttr := ""
	if to != "" {
		toAttr = ` to='` + to + `'`
	}
	c.Send(`<iq type='` + typ + `' id='` + id + `'` + toAttr + `>` + payload + `</iq>`)
	return until(c, "answer to iq "+id, func(e xmpptest.Elem) bool { return e.XMLName.Local == "iq" && e.Attr("id") == id })
}

// drain makes a ping round trip and returns everything that arrived
// before its answer: after the sender synced, that is everything routed
// to c so far.
func drain(c *xmpptest.Client) []xmpptest.Elem {
	c.T.Helper()
	_, before := iq(c, "get", domain, `<ping xmlns='urn:xmpp:ping'/>`)
	return before
}

// quiet fails unless nothing at all is waiting for c.
func quiet(t *testing.T, c *xmpptest.Client, why string) {
	t.Helper()
	if got := drain(c); len(got) > 0 {
		t.Errorf("%s: %s, yet got %v", c.JID, why, got)
	}
}

func mustResult(t *testing.T, e xmpptest.Elem) {
	t.Helper()
	if e.Attr("type") != "result" {
		t.Fatalf("want a result, got %v", e)
	}
}

// stanzaError is the <error/> of an error stanza.
type stanzaError struct {
	Type string
	Cond string   // the RFC 6120 condition
	App  []string // application conditions, "{ns}local"
}

func errorOf(t *testing.T, e xmpptest.Elem) stanzaError {
	t.Helper()
	if e.Attr("type") != "error" {
		t.Fatalf("want an error, got %v", e)
	}
	var x struct {
		Error struct {
			Type string                       `xml:"type,attr"`
			Any  []struct{ XMLName xml.Name } `xml:",any"`
		} `xml:"error"`
	}
	if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &x); err != nil {
		t.Fatalf("error stanza does not parse: %v: %v", err, e)
	}
	se := stanzaError{Type: x.Error.Type}
	for _, a := range x.Error.Any {
		switch {
		case a.XMLName.Space == nsStanzas && a.XMLName.Local != "text":
			se.Cond = a.XMLName.Local
		case a.XMLName.Space != nsStanzas:
			se.App = append(se.App, "{"+a.XMLName.Space+"}"+a.XMLName.Local)
		}
	}
	return se
}

func wantError(t *testing.T, e xmpptest.Elem, typ, cond string) stanzaError {
	t.Helper()
	se := errorOf(t, e)
	if se.Cond != cond || se.Type != typ {
		t.Errorf("got error %s/%s, want %s/%s: %v", se.Type, se.Cond, typ, cond, e)
	}
	return se
}

type rosterItem struct {
	JID          string   `xml:"jid,attr"`
	Name         string   `xml:"name,attr"`
	Subscription string   `xml:"subscription,attr"`
	Ask          string   `xml:"ask,attr"`
	Approved     string   `xml:"approved,attr"`
	Groups       []string `xml:"group"`
}

type rosterQuery struct {
	XMLName xml.Name
	Ver     *string      `xml:"ver,attr"`
	Items   []rosterItem `xml:"item"`
}

// rosterOf decodes the roster query of a result or push.
func rosterOf(t *testing.T, e xmpptest.Elem) rosterQuery {
	t.Helper()
	var q rosterQuery
	if err := xml.Unmarshal([]byte(e.Inner), &q); err != nil || q.XMLName.Space != nsRoster || q.XMLName.Local != "query" {
		t.Fatalf("no roster query (%v) in %v", err, e)
	}
	if q.Ver == nil || *q.Ver == "" {
		t.Errorf("roster without ver (XEP-0237): %v", e)
		q.Ver = new(string)
	}
	return q
}

func isRosterPush(e xmpptest.Elem) bool {
	return e.XMLName.Local == "iq" && e.Attr("type") == "set" && strings.Contains(e.Inner, nsRoster)
}

// expectPush reads the next roster push of c (skipping other elements),
// checks that it comes from the account itself and has one item, and
// returns it.
func expectPush(t *testing.T, c *xmpptest.Client) (rosterItem, string) {
	t.Helper()
	e := c.Expect("roster push", isRosterPush)
	return checkPush(t, c, e)
}

func checkPush(t *testing.T, c *xmpptest.Client, e xmpptest.Elem) (rosterItem, string) {
	t.Helper()
	if from := e.Attr("from"); from != "" && from != bareOf(c.JID) {
		t.Errorf("roster push from %q (RFC 6121 §2.1.6: none or the account's bare JID)", from)
	}
	if e.Attr("id") == "" {
		t.Errorf("roster push without id: %v", e)
	}
	q := rosterOf(t, e)
	if len(q.Items) != 1 {
		t.Fatalf("roster push with %d items: %v", len(q.Items), e)
	}
	return q.Items[0], *q.Ver
}

func findPush(t *testing.T, c *xmpptest.Client, list []xmpptest.Elem) (rosterItem, string) {
	t.Helper()
	for _, e := range list {
		if isRosterPush(e) {
			return checkPush(t, c, e)
		}
	}
	t.Fatalf("%s: no roster push among %v", c.JID, list)
	return rosterItem{}, ""
}

// rosterGet returns the roster of c's account.
func rosterGet(t *testing.T, c *xmpptest.Client) rosterQuery {
	t.Helper()
	r, _ := iq(c, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	mustResult(t, r)
	return rosterOf(t, r)
}

func wantItem(t *testing.T, got rosterItem, jid, sub, ask string) {
	t.Helper()
	if got.JID != jid || got.Subscription != sub || got.Ask != ask {
		t.Errorf("roster item jid=%q subscription=%q ask=%q, want jid=%q subscription=%q ask=%q",
			got.JID, got.Subscription, got.Ask, jid, sub, ask)
	}
}

// onlyItem checks that the roster holds exactly one item and returns it.
func onlyItem(t *testing.T, q rosterQuery) rosterItem {
	t.Helper()
	if len(q.Items) != 1 {
		t.Fatalf("roster has %d items, want 1: %+v", len(q.Items), q.Items)
	}
	return q.Items[0]
}

func bareOf(full string) string {
	b, _, _ := strings.Cut(full, "/")
	return b
}

func isPresence(typ, from string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("type") == typ && e.Attr("from") == from
	}
}

func find(list []xmpptest.Elem, f func(xmpptest.Elem) bool) (xmpptest.Elem, bool) {
	for _, e := range list {
		if f(e) {
			return e, true
		}
	}
	return xmpptest.Elem{}, false
}

// befriend makes a and b (both available) subscribed to each other.
func befriend(t *testing.T, a, b *xmpptest.Client) {
	t.Helper()
	ab, bb := bareOf(a.JID), bareOf(b.JID)
	a.Send(`<presence type='subscribe' to='` + bb + `'/>`)
	b.Expect("subscribe", isPresence("subscribe", ab))
	b.Send(`<presence type='subscribed' to='` + ab + `'/>`)
	a.Expect("subscribed", isPresence("subscribed", bb))
	b.Send(`<presence type='subscribe' to='` + ab + `'/>`)
	a.Expect("subscribe", isPresence("subscribe", bb))
	a.Send(`<presence type='subscribed' to='` + bb + `'/>`)
	b.Expect("subscribed", isPresence("subscribed", ab))
	wantItem(t, onlyItem(t, rosterGet(t, a)), bb, "both", "")
	wantItem(t, onlyItem(t, rosterGet(t, b)), ab, "both", "")
	drain(a)
	drain(b)
}

// --- roster ----------------------------------------------------------------

func testRoster(t *testing.T, s *daemonUnderTest) {
	alice, bob, carol := s.newUser(t), s.newUser(t), s.newUser(t)
	a1 := s.login(t, alice, "r1")
	a2 := s.login(t, alice, "r2")
	a3 := s.login(t, alice, "r3") // never asks for the roster: no pushes

	// an empty roster, with a version
	q0 := rosterGet(t, a1)
	if len(q0.Items) != 0 {
		t.Fatalf("new account has a roster: %+v", q0.Items)
	}
	rosterGet(t, a2)

	// add: a push to both interested resources, then the result
	r, before := iq(a1, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`' name='Bob'><group>Friends</group></item></query>`)
	mustResult(t, r)
	if strings.TrimSpace(r.Inner) != "" {
		t.Errorf("roster set result has a payload: %v", r)
	}
	it, v1 := findPush(t, a1, before)
	wantItem(t, it, bob.bare(), "none", "")
	if it.Name != "Bob" || len(it.Groups) != 1 || it.Groups[0] != "Friends" {
		t.Errorf("pushed item %+v", it)
	}
	if v1 == *q0.Ver {
		t.Errorf("roster version did not change on add: %q", v1)
	}
	it2, v := expectPush(t, a2)
	if it2.JID != bob.bare() || it2.Name != "Bob" || v != v1 {
		t.Errorf("second resource got push %+v ver %q, want Bob ver %q", it2, v, v1)
	}
	a1.Sync()
	quiet(t, a3, "a resource that never fetched the roster gets no pushes")

	// get: the item and the push's version
	q := rosterGet(t, a1)
	got := onlyItem(t, q)
	wantItem(t, got, bob.bare(), "none", "")
	if got.Name != "Bob" || len(got.Groups) != 1 || got.Groups[0] != "Friends" || *q.Ver != v1 {
		t.Errorf("roster %+v ver %q, want Bob in Friends ver %q", got, *q.Ver, v1)
	}

	// XEP-0237: the same version gets an empty result, an older one the roster
	r, _ = iq(a1, "get", "", `<query xmlns='jabber:iq:roster' ver='`+v1+`'/>`)
	mustResult(t, r)
	if strings.TrimSpace(r.Inner) != "" {
		t.Errorf("roster get with the current ver: want an empty result, got %v", r)
	}
	r, _ = iq(a1, "get", "", `<query xmlns='jabber:iq:roster' ver='`+*q0.Ver+`'/>`)
	mustResult(t, r)
	if q := rosterOf(t, r); len(q.Items) != 1 || *q.Ver != v1 {
		t.Errorf("roster get with an old ver: %v", r)
	}

	// update: name and groups change, pushed again with a newer version
	r, before = iq(a1, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`' name='Robert'><group>Friends</group><group>Work</group></item></query>`)
	mustResult(t, r)
	it, v2 := findPush(t, a1, before)
	if it.Name != "Robert" || len(it.Groups) != 2 || v2 == v1 {
		t.Errorf("update push %+v ver %q", it, v2)
	}
	if it, _ := expectPush(t, a2); it.Name != "Robert" {
		t.Errorf("second resource: update push %+v", it)
	}

	// a second contact
	r, before = iq(a1, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+carol.bare()+`'/></query>`)
	mustResult(t, r)
	findPush(t, a1, before)
	expectPush(t, a2)
	if q := rosterGet(t, a1); len(q.Items) != 2 {
		t.Errorf("roster with two contacts: %+v", q.Items)
	}

	// remove: pushed as subscription='remove'
	r, before = iq(a1, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`' subscription='remove'/></query>`)
	mustResult(t, r)
	it, v3 := findPush(t, a1, before)
	if it.JID != bob.bare() || it.Subscription != "remove" || v3 == v2 {
		t.Errorf("remove push %+v ver %q", it, v3)
	}
	if it, _ := expectPush(t, a2); it.Subscription != "remove" {
		t.Errorf("second resource: remove push %+v", it)
	}
	q = rosterGet(t, a1)
	wantItem(t, onlyItem(t, q), carol.bare(), "none", "")
	if *q.Ver != v3 {
		t.Errorf("roster ver %q after remove, push said %q", *q.Ver, v3)
	}

	// removing what is not there is item-not-found (RFC 6121 §2.5.3)
	r, _ = iq(a1, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`' subscription='remove'/></query>`)
	wantError(t, r, "cancel", "item-not-found")

	// another account's roster is nobody else's business (§2.1.5)
	b := s.login(t, bob, "x")
	r, _ = iq(b, "get", alice.bare(), `<query xmlns='jabber:iq:roster'/>`)
	wantError(t, r, "auth", "forbidden")
	r, _ = iq(b, "set", alice.bare(), `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`'/></query>`)
	wantError(t, r, "auth", "forbidden")

	a1.Sync()
	quiet(t, a3, "no pushes for a resource that never fetched the roster")
}

// --- subscriptions and presence ---------------------------------------------

func testSubscription(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")
	b := s.online(t, bob, "laptop")

	// A asks B
	a.Send(`<presence type='subscribe' to='` + bob.bare() + `'/>`)
	it, _ := expectPush(t, a)
	wantItem(t, it, bob.bare(), "none", "subscribe")
	req := b.Expect("subscription request", isPresence("subscribe", alice.bare()))
	if req.Attr("to") != bob.bare() {
		t.Errorf("request to %q", req.Attr("to"))
	}
	// B has not answered: A is not in B's roster yet (RFC 6121 §3.1.3)
	if q := rosterGet(t, b); len(q.Items) != 0 {
		t.Errorf("a pending request shows in the roster: %+v", q.Items)
	}
	a.Sync()
	quiet(t, a, "B has not answered")

	// B approves: B's item says from, A's to; A gets 'subscribed' and B's presence
	b.Send(`<presence type='subscribed' to='` + alice.bare() + `'/>`)
	it, _ = expectPush(t, b)
	wantItem(t, it, alice.bare(), "from", "")
	_, before := until(a, "B's presence", isPresence("", b.JID))
	it, _ = findPush(t, a, before)
	wantItem(t, it, bob.bare(), "to", "")
	if _, ok := find(before, isPresence("subscribed", bob.bare())); !ok {
		t.Errorf("A got no 'subscribed' from B before B's presence: %v", before)
	}

	// and the other way round
	b.Send(`<presence type='subscribe' to='` + alice.bare() + `'/>`)
	it, _ = expectPush(t, b)
	wantItem(t, it, alice.bare(), "from", "subscribe")
	a.Expect("subscription request", isPresence("subscribe", bob.bare()))
	a.Send(`<presence type='subscribed' to='` + bob.bare() + `'/>`)
	it, _ = expectPush(t, a)
	wantItem(t, it, bob.bare(), "both", "")
	_, before = until(b, "A's presence", isPresence("", a.JID))
	it, _ = findPush(t, b, before)
	wantItem(t, it, alice.bare(), "both", "")
	if _, ok := find(before, isPresence("subscribed", alice.bare())); !ok {
		t.Errorf("B got no 'subscribed' from A: %v", before)
	}

	// both ends say both
	wantItem(t, onlyItem(t, rosterGet(t, a)), bob.bare(), "both", "")
	wantItem(t, onlyItem(t, rosterGet(t, b)), alice.bare(), "both", "")

	// a second 'subscribe' when already subscribed is answered by B's
	// server (RFC 6121 §3.1.3): B is not asked again
	a.Send(`<presence type='subscribe' to='` + bob.bare() + `'/>`)
	a.Sync()
	for _, e := range drain(b) {
		if isPresence("subscribe", alice.bare())(e) {
			t.Errorf("B was asked again although A is subscribed: %v", e)
		}
	}

	// A unsubscribes (§3.3): A's item goes to 'from', B's to 'to', B is
	// told, and A gets B's unavailable since A no longer receives B's presence
	a.Send(`<presence type='unsubscribe' to='` + bob.bare() + `'/>`)
	it, _ = expectPush(t, a)
	wantItem(t, it, bob.bare(), "from", "")
	a.Expect("B's unavailable", isPresence("unavailable", b.JID))
	it, _ = expectPush(t, b)
	wantItem(t, it, alice.bare(), "to", "")
	b.Expect("the unsubscribe", isPresence("unsubscribe", alice.bare()))
}

func testPresence(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")
	b := s.online(t, bob, "laptop")
	befriend(t, a, b)

	// a change of presence reaches the contact, and the user's own resource
	a.Send(`<presence><show>away</show><status>lunch</status></presence>`)
	p := b.Expect("A away", isPresence("", a.JID))
	if !strings.Contains(p.Inner, "<show>away</show>") || !strings.Contains(p.Inner, "lunch") {
		t.Errorf("B got %v", p)
	}
	a.Expect("own presence", isPresence("", a.JID))

	// unavailable reaches the contact, and the resource that sent it
	// (RFC 6121 §4.5.2)
	a.Send(`<presence type='unavailable'/>`)
	b.Expect("A unavailable", isPresence("unavailable", a.JID))
	a.Expect("own unavailable", isPresence("unavailable", a.JID))

	// a second resource logs in: its initial presence probes B, whose
	// presence comes back, and reaches B
	b.Send(`<presence><status>at work</status></presence>`)
	b.Sync()
	a2 := s.login(t, alice, "tablet")
	a2.Send(`<presence/>`)
	p = a2.Expect("B's presence, the answer to the probe", isPresence("", b.JID))
	if !strings.Contains(p.Inner, "at work") {
		t.Errorf("probe answered with %v", p)
	}
	b.Expect("A's new resource", isPresence("", a2.JID))

	// the first resource is unavailable: it hears nothing of the second
	a2.Sync()
	quiet(t, a, "an unavailable resource gets no presence")

	// a session that ends without unavailable presence: the server sends it
	a2.Conn.Close()
	b.Expect("unavailable of the closed session", isPresence("unavailable", a2.JID))
}

func testOfflineSubscribe(t *testing.T, s *daemonUnderTest) {
	alice, carol := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")

	// carol has an account but no session: the request waits for her
	a.Send(`<presence type='subscribe' to='` + carol.bare() + `'/>`)
	it, _ := expectPush(t, a)
	wantItem(t, it, carol.bare(), "none", "subscribe")
	a.Sync()

	c := s.login(t, carol, "c")
	if q := rosterGet(t, c); len(q.Items) != 0 {
		t.Errorf("a pending request shows in carol's roster: %+v", q.Items)
	}
	c.Send(`<presence/>`)
	req := c.Expect("the request that waited", isPresence("subscribe", alice.bare()))
	if req.Attr("to") != carol.bare() {
		t.Errorf("request to %q", req.Attr("to"))
	}
	// and she can answer it
	c.Send(`<presence type='subscribed' to='` + alice.bare() + `'/>`)
	it, _ = expectPush(t, c)
	wantItem(t, it, alice.bare(), "from", "")
	_, before := until(a, "carol's presence", isPresence("", c.JID))
	it, _ = findPush(t, a, before)
	wantItem(t, it, carol.bare(), "to", "")

	// a probe answered at login: alice logs in again; carol is online
	a2 := s.login(t, alice, "tablet")
	a2.Send(`<presence/>`)
	a2.Expect("carol's presence", isPresence("", c.JID))
	// carol goes away; a third login of alice gets her unavailable (bare)
	c.Send(`</stream:stream>`)
	a2.Expect("carol gone", isPresence("unavailable", c.JID))
	a3 := s.login(t, alice, "desk")
	a3.Send(`<presence/>`)
	a3.Expect("the probe answer for an offline contact", isPresence("unavailable", carol.bare()))
}

// The other party written in national form is the same account, and the
// server speaks of it only under its canonical JID.
func testNationalForm(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")
	b := s.online(t, bob, "laptop")
	nat := bob.national() + "@" + domain

	// a roster item
	r, before := iq(a, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+nat+`' name='B'/></query>`)
	mustResult(t, r)
	it, _ := findPush(t, a, before)
	wantItem(t, it, bob.bare(), "none", "")
	wantItem(t, onlyItem(t, rosterGet(t, a)), bob.bare(), "none", "")

	// subscription stanzas
	a.Send(`<presence type='subscribe' to='` + nat + `'/>`)
	it, _ = expectPush(t, a)
	wantItem(t, it, bob.bare(), "none", "subscribe")
	req := b.Expect("request", isPresence("subscribe", alice.bare()))
	if req.Attr("to") != bob.bare() {
		t.Errorf("request to %q", req.Attr("to"))
	}
	b.Send(`<presence type='subscribed' to='` + alice.national() + `@` + domain + `'/>`)
	it, _ = expectPush(t, b)
	wantItem(t, it, alice.bare(), "from", "")
	a.Expect("subscribed", isPresence("subscribed", bob.bare()))
	wantItem(t, onlyItem(t, rosterGet(t, a)), bob.bare(), "to", "")

	// a message and an iq to the national form
	a.Send(`<message type='chat' id='n1' to='` + nat + `'><body>hi</body></message>`)
	m := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "n1" })
	if m.Attr("to") != bob.bare() || m.Attr("from") != a.JID {
		t.Errorf("message %v", m)
	}
	r, _ = iq(a, "get", nat, `<ping xmlns='urn:xmpp:ping'/>`)
	mustResult(t, r)
	if r.Attr("from") != bob.bare() {
		t.Errorf("ping answered from %q, want %q", r.Attr("from"), bob.bare())
	}

	// and the removal
	r, before = iq(a, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+nat+`' subscription='remove'/></query>`)
	mustResult(t, r)
	it, _ = findPush(t, a, before)
	if it.JID != bob.bare() || it.Subscription != "remove" {
		t.Errorf("remove push %+v", it)
	}
	if q := rosterGet(t, a); len(q.Items) != 0 {
		t.Errorf("roster after remove: %+v", q.Items)
	}
}

// --- disco, caps, version, ping ------------------------------------------

type discoInfo struct {
	XMLName    xml.Name
	Node       string `xml:"node,attr"`
	Identities []struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
		Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Name     string `xml:"name,attr"`
	} `xml:"identity"`
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
}

func (d discoInfo) has(f string) bool {
	for _, x := range d.Features {
		if x.Var == f {
			return true
		}
	}
	return false
}

func (d discoInfo) hasIdentity(category, typ string) bool {
	for _, id := range d.Identities {
		if id.Category == category && id.Type == typ {
			return true
		}
	}
	return false
}

// ver computes the XEP-0115 §5.1 verification string, independently of
// the server's own code.
func (d discoInfo) ver() string {
	var ids, feats []string
	for _, i := range d.Identities {
		ids = append(ids, i.Category+"/"+i.Type+"/"+i.Lang+"/"+i.Name)
	}
	for _, f := range d.Features {
		feats = append(feats, f.Var)
	}
	sort.Strings(ids)
	sort.Strings(feats)
	s := ""
	for _, x := range append(ids, feats...) {
		s += x + "<"
	}
	sum := sha1.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func discoOf(t *testing.T, c *xmpptest.Client, to, node string) discoInfo {
	t.Helper()
	nodeAttr := ""
	if node != "" {
		nodeAttr = ` node='` + node + `'`
	}
	r, _ := iq(c, "get", to, `<query xmlns='`+nsDiscoInf+`'`+nodeAttr+`/>`)
	mustResult(t, r)
	var d discoInfo
	if err := xml.Unmarshal([]byte(r.Inner), &d); err != nil || d.XMLName.Space != nsDiscoInf {
		t.Fatalf("disco#info result %v: %v", r, err)
	}
	if d.Node != node {
		t.Errorf("disco#info node %q, want %q", d.Node, node)
	}
	return d
}

func testDiscoCaps(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	s.login(t, bob, "x") // bob exists and has logged in once

	// The features after authentication carry the caps element; read them
	// by hand, over the direct TLS port this time.
	c := xmpptest.DialTLS(t, s.d.Addr("direct"))
	c.Open(domain)
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, alice.num, alice.pass); cond != "" {
		t.Fatalf("auth: %s", cond)
	}
	c.Open(domain)
	f := c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	var feats struct {
		Caps *struct {
			Hash string `xml:"hash,attr"`
			Node string `xml:"node,attr"`
			Ver  string `xml:"ver,attr"`
		} `xml:"http://jabber.org/protocol/caps c"`
		RosterVer *struct{} `xml:"urn:xmpp:features:rosterver ver"`
		Bind      *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	}
	if err := xml.Unmarshal([]byte("<f>"+f.Inner+"</f>"), &feats); err != nil {
		t.Fatal(err)
	}
	if feats.Caps == nil || feats.Bind == nil || feats.RosterVer == nil {
		t.Fatalf("stream features after auth lack caps, bind or rosterver: %s", f.Inner)
	}
	if feats.Caps.Hash != "sha-1" || feats.Caps.Node == "" || feats.Caps.Ver == "" {
		t.Errorf("caps element %+v", *feats.Caps)
	}
	c.Send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>d</resource></bind></iq>`)
	mustResult(t, c.Expect("bind", func(e xmpptest.Elem) bool { return e.Attr("id") == "b" }))
	c.JID = alice.bare() + "/d"

	// the server's disco#info: identity and features
	d := discoOf(t, c, domain, "")
	if len(d.Identities) != 1 || d.Identities[0].Category != "server" || d.Identities[0].Type != "im" {
		t.Errorf("server identities %+v", d.Identities)
	}
	for _, f := range []string{nsRoster, nsVCard, nsBlocking, nsPing, nsVersion, nsDiscoInf, "http://jabber.org/protocol/disco#items", "urn:xmpp:carbons:2"} {
		if !d.has(f) {
			t.Errorf("server disco#info lacks %s: %+v", f, d.Features)
		}
	}
	// the caps ver is the hash of exactly that, and the node#ver is answered
	if got := d.ver(); got != feats.Caps.Ver {
		t.Errorf("caps ver %q does not verify: disco#info hashes to %q", feats.Caps.Ver, got)
	}
	dn := discoOf(t, c, domain, feats.Caps.Node+"#"+feats.Caps.Ver)
	if dn.ver() != feats.Caps.Ver {
		t.Errorf("disco#info of node#ver hashes to %q, want %q", dn.ver(), feats.Caps.Ver)
	}

	// an account, answered by the server on its behalf
	for _, to := range []string{bob.bare(), alice.bare()} {
		d = discoOf(t, c, to, "")
		if !d.hasIdentity("account", "registered") || !d.hasIdentity("pubsub", "pep") || len(d.Identities) != 2 {
			t.Errorf("%s: identities %+v", to, d.Identities)
		}
		for _, f := range []string{nsDiscoInf, nsPing, nsVCard} {
			if !d.has(f) {
				t.Errorf("%s: disco#info lacks %s: %+v", to, f, d.Features)
			}
		}
	}
	// a number without account answers like one with (SPEC.md: whether a
	// number has an account is not visible to other users)
	if d := discoOf(t, c, s.newNumber()+"@"+domain, ""); len(d.Identities) != 2 || !d.hasIdentity("account", "registered") {
		t.Errorf("a number without account: identities %+v", d.Identities)
	}
}

func testVersionPing(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")

	r, _ := iq(a, "get", domain, `<query xmlns='jabber:iq:version'/>`)
	mustResult(t, r)
	var v struct {
		XMLName xml.Name
		Name    string  `xml:"name"`
		Version string  `xml:"version"`
		OS      *string `xml:"os"`
	}
	if err := xml.Unmarshal([]byte(r.Inner), &v); err != nil || v.XMLName.Space != nsVersion {
		t.Fatalf("version result %v: %v", r, err)
	}
	if v.Name != "Dialtone" || v.Version != daemon.Version || v.OS != nil {
		t.Errorf("version %+v", v)
	}
	if r.Attr("from") != domain {
		t.Errorf("version answered from %q", r.Attr("from"))
	}

	// ping: the server, an account's bare JID (answered by the server, the
	// account being offline), oneself
	for _, to := range []string{domain, bob.bare(), alice.bare()} {
		r, _ = iq(a, "get", to, `<ping xmlns='urn:xmpp:ping'/>`)
		mustResult(t, r)
		if r.Attr("from") != to {
			t.Errorf("ping to %s answered from %q", to, r.Attr("from"))
		}
	}
	// a full JID is the client's to answer
	b := s.login(t, bob, "y")
	a.Send(`<iq type='get' id='pf' to='` + b.JID + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	p := b.Expect("forwarded ping", func(e xmpptest.Elem) bool { return e.Attr("id") == "pf" })
	if p.Attr("from") != a.JID {
		t.Errorf("forwarded ping %v", p)
	}
	b.Send(`<iq type='result' id='pf' to='` + a.JID + `'/>`)
	if r := a.Expect("pong", func(e xmpptest.Elem) bool { return e.Attr("id") == "pf" }); r.Attr("type") != "result" || r.Attr("from") != b.JID {
		t.Errorf("pong %v", r)
	}
	// a number without account answers like an account (SPEC.md); a
	// resource that is not there is nobody
	r, _ = iq(a, "get", s.newNumber()+"@"+domain, `<ping xmlns='urn:xmpp:ping'/>`)
	mustResult(t, r)
	r, _ = iq(a, "get", bob.bare()+"/nowhere", `<ping xmlns='urn:xmpp:ping'/>`)
	wantError(t, r, "cancel", "service-unavailable")
}

// --- vCard, private storage --------------------------------------------------

func testVCard(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")
	b := s.login(t, bob, "y")

	vcard := func(e xmpptest.Elem) (fn string) {
		t.Helper()
		var v struct {
			XMLName xml.Name
			FN      string `xml:"FN"`
			Nick    string `xml:"NICKNAME"`
		}
		if err := xml.Unmarshal([]byte(e.Inner), &v); err != nil || v.XMLName != (xml.Name{Space: nsVCard, Local: "vCard"}) {
			t.Fatalf("no vCard in %v: %v", e, err)
		}
		return v.FN + "|" + v.Nick
	}

	// nothing stored yet: an empty vCard
	r, _ := iq(a, "get", "", `<vCard xmlns='vcard-temp'/>`)
	mustResult(t, r)
	if got := vcard(r); got != "|" {
		t.Errorf("empty vCard has %q", got)
	}

	r, _ = iq(a, "set", "", `<vCard xmlns='vcard-temp'><FN>Alice Kim</FN><NICKNAME>ali &amp; ce</NICKNAME></vCard>`)
	mustResult(t, r)
	r, _ = iq(a, "get", "", `<vCard xmlns='vcard-temp'/>`)
	mustResult(t, r)
	if got := vcard(r); got != "Alice Kim|ali & ce" {
		t.Errorf("own vCard %q", got)
	}
	// another local account reads it; written in national form too
	for _, to := range []string{alice.bare(), alice.national() + "@" + domain} {
		r, _ = iq(b, "get", to, `<vCard xmlns='vcard-temp'/>`)
		mustResult(t, r)
		if got := vcard(r); got != "Alice Kim|ali & ce" {
			t.Errorf("alice's vCard as bob sees it (to %s): %q", to, got)
		}
		if r.Attr("from") != alice.bare() {
			t.Errorf("vCard answered from %q", r.Attr("from"))
		}
	}
	// but may not change it
	r, _ = iq(b, "set", alice.bare(), `<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>`)
	wantError(t, r, "auth", "forbidden")
	r, _ = iq(a, "get", "", `<vCard xmlns='vcard-temp'/>`)
	if got := vcard(r); got != "Alice Kim|ali & ce" {
		t.Errorf("vCard after a forbidden set: %q", got)
	}
	// bob has none
	r, _ = iq(a, "get", bob.bare(), `<vCard xmlns='vcard-temp'/>`)
	mustResult(t, r)
	if got := vcard(r); got != "|" {
		t.Errorf("bob's vCard %q", got)
	}
}

func testPrivate(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")
	b := s.login(t, bob, "y")

	prefs := `<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>`
	r, _ := iq(a, "set", "", `<query xmlns='jabber:iq:private'>`+prefs+`</query>`)
	mustResult(t, r)

	get := func(c *xmpptest.Client, to string) xmpptest.Elem {
		t.Helper()
		r, _ := iq(c, "get", to, `<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>`)
		return r
	}
	theme := func(r xmpptest.Elem) string {
		t.Helper()
		mustResult(t, r)
		var q struct {
			XMLName xml.Name
			Prefs   struct {
				XMLName xml.Name
				Theme   string `xml:"theme"`
			} `xml:"urn:example:prefs prefs"`
		}
		if err := xml.Unmarshal([]byte(r.Inner), &q); err != nil || q.XMLName.Space != nsPrivate || q.Prefs.XMLName.Local != "prefs" {
			t.Fatalf("private result %v: %v", r, err)
		}
		return q.Prefs.Theme
	}
	if got := theme(get(a, "")); got != "dark" {
		t.Errorf("stored private data: theme %q", got)
	}
	// bob's own is empty, alice's he may neither read nor write
	if got := theme(get(b, "")); got != "" {
		t.Errorf("bob's private data: theme %q", got)
	}
	wantError(t, get(b, alice.bare()), "auth", "forbidden")
	r, _ = iq(b, "set", alice.bare(), `<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><theme>pink</theme></prefs></query>`)
	wantError(t, r, "auth", "forbidden")
	if got := theme(get(a, "")); got != "dark" {
		t.Errorf("after bob's attempt: theme %q", got)
	}
}

// --- blocking -------------------------------------------------------------------

func blockItems(t *testing.T, e xmpptest.Elem, local string) []string {
	t.Helper()
	var q struct {
		XMLName xml.Name
		Items   []struct {
			JID string `xml:"jid,attr"`
		} `xml:"item"`
	}
	if err := xml.Unmarshal([]byte(e.Inner), &q); err != nil || q.XMLName != (xml.Name{Space: nsBlocking, Local: local}) {
		t.Fatalf("no <%s xmlns='urn:xmpp:blocking'/> in %v: %v", local, e, err)
	}
	var out []string
	for _, it := range q.Items {
		out = append(out, it.JID)
	}
	return out
}

func isBlockPush(local string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("type") == "set" && strings.Contains(e.Inner, "<"+local+" ") && strings.Contains(e.Inner, nsBlocking)
	}
}

func testBlocking(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a1 := s.online(t, alice, "one")
	a2 := s.login(t, alice, "two") // asks for the blocklist, never available
	b := s.online(t, bob, "b")
	befriend(t, a1, b)

	for _, c := range []*xmpptest.Client{a1, a2} {
		r, _ := iq(c, "get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
		mustResult(t, r)
		if got := blockItems(t, r, "blocklist"); len(got) != 0 {
			t.Fatalf("new blocklist %v", got)
		}
	}

	// block bob, written in national form: both resources that asked for
	// the list get the push (canonical JID), bob gets alice's unavailable
	r, before := iq(a1, "set", "", `<block xmlns='urn:xmpp:blocking'><item jid='`+bob.national()+`@`+domain+`'/></block>`)
	mustResult(t, r)
	push, ok := find(before, isBlockPush("block"))
	if !ok {
		push = a1.Expect("block push", isBlockPush("block"))
	}
	if got := blockItems(t, push, "block"); len(got) != 1 || got[0] != bob.bare() {
		t.Errorf("block push %v", got)
	}
	if got := blockItems(t, a2.Expect("block push", isBlockPush("block")), "block"); len(got) != 1 || got[0] != bob.bare() {
		t.Errorf("block push to the other resource %v", got)
	}
	b.Expect("alice unavailable to the blocked contact", isPresence("unavailable", a1.JID))
	r, _ = iq(a1, "get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
	if got := blockItems(t, r, "blocklist"); len(got) != 1 || got[0] != bob.bare() {
		t.Errorf("blocklist %v", got)
	}

	// bob's message to alice is refused, and she gets nothing
	b.Send(`<message type='chat' id='bm1' to='` + alice.bare() + `'><body>hello?</body></message>`)
	e := b.Expect("refusal", func(e xmpptest.Elem) bool { return e.Attr("id") == "bm1" })
	wantError(t, e, "cancel", "service-unavailable")
	// alice's message to bob is refused with <blocked/>, and he gets nothing
	a1.Send(`<message type='chat' id='am1' to='` + bob.bare() + `'><body>psst</body></message>`)
	e = a1.Expect("refusal", func(e xmpptest.Elem) bool { return e.Attr("id") == "am1" })
	se := wantError(t, e, "cancel", "not-acceptable")
	if len(se.App) != 1 || se.App[0] != "{"+nsBlockErr+"}blocked" {
		t.Errorf("refusal without <blocked xmlns='%s'/>: %v", nsBlockErr, e)
	}
	// nor does alice's presence reach bob, nor bob's alice
	a1.Send(`<presence><status>hidden from bob</status></presence>`)
	a1.Sync()
	for _, e := range drain(b) {
		if e.Attr("id") == "am1" || e.Attr("from") == a1.JID {
			t.Errorf("bob got something from alice, who blocks him: %v", e)
		}
	}
	b.Send(`<presence><status>hidden from alice</status></presence>`)
	b.Sync()
	for _, e := range drain(a1) {
		if e.Attr("id") == "bm1" || e.Attr("from") == b.JID {
			t.Errorf("alice got something from bob, whom she blocks: %v", e)
		}
	}
	// a new session of bob probes alice: no answer from her either
	b2 := s.login(t, bob, "b2")
	b2.Send(`<presence/>`)
	b2.Sync()
	for _, e := range drain(b2) {
		if bareOf(e.Attr("from")) == alice.bare() {
			t.Errorf("bob's new session got %v from alice, who blocks him", e)
		}
	}
	b2.Send(`</stream:stream>`)
	b.Expect("b2 gone", isPresence("unavailable", b2.JID))

	// unblock: pushes, bob sees alice's presence again, messages flow
	r, before = iq(a1, "set", "", `<unblock xmlns='urn:xmpp:blocking'><item jid='`+bob.bare()+`'/></unblock>`)
	mustResult(t, r)
	if _, ok := find(before, isBlockPush("unblock")); !ok {
		a1.Expect("unblock push", isBlockPush("unblock"))
	}
	if got := blockItems(t, a2.Expect("unblock push", isBlockPush("unblock")), "unblock"); len(got) != 1 || got[0] != bob.bare() {
		t.Errorf("unblock push %v", got)
	}
	p := b.Expect("alice's presence after the unblock (XEP-0191 §3.4)", isPresence("", a1.JID))
	if !strings.Contains(p.Inner, "hidden from bob") {
		t.Errorf("presence after unblock %v", p)
	}
	b.Send(`<message type='chat' id='bm2' to='` + alice.bare() + `'><body>again</body></message>`)
	if m := a1.Expect("bob's message", func(e xmpptest.Elem) bool { return e.Attr("id") == "bm2" }); m.Attr("type") != "chat" {
		t.Errorf("after unblock alice got %v", m)
	}
	a1.Send(`<message type='chat' id='am2' to='` + bob.bare() + `'><body>again</body></message>`)
	if m := b.Expect("alice's message", func(e xmpptest.Elem) bool { return e.Attr("id") == "am2" }); m.Attr("type") != "chat" {
		t.Errorf("after unblock bob got %v", m)
	}
	r, _ = iq(a1, "get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
	if got := blockItems(t, r, "blocklist"); len(got) != 0 {
		t.Errorf("blocklist after unblock %v", got)
	}
}

// --- routing errors -------------------------------------------------------------

func testRoutingErrors(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")
	// An offline account and a latent number get the message stored
	// (SPEC.md "Offline messages"): nothing comes back.
	latent := s.newNumber()
	for _, to := range []string{bob.bare(), latent + "@" + domain} {
		id := nextID("m")
		a.Send(`<message type='chat' id='` + id + `' to='` + to + `'><body>x</body></message>`)
		if e, ok := find(drain(a), func(e xmpptest.Elem) bool { return e.Attr("id") == id }); ok {
			t.Errorf("message to %s came back: %v", to, e)
		}
	}
	for _, n := range []string{bob.num, latent} {
		if c, err := s.d.DB.CountOffline(context.Background(), n); err != nil || c != 1 {
			t.Errorf("%s: %d stored (%v), want 1", n, c, err)
		}
	}
	for _, tc := range []struct{ name, to, cond string }{
		{"invalid number", "+82123@" + domain, "item-not-found"},
		{"not a number", "12@" + domain, "item-not-found"},
	} {
		id := nextID("m")
		a.Send(`<message type='chat' id='` + id + `' to='` + tc.to + `'><body>x</body></message>`)
		e := a.Expect(tc.name, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		if e.XMLName.Local != "message" {
			t.Errorf("%s: %v", tc.name, e)
		}
		if se := errorOf(t, e); se.Cond != tc.cond {
			t.Errorf("%s: got %s, want %s: %v", tc.name, se.Cond, tc.cond, e)
		}
	}
}

// --- HTTP --------------------------------------------------------------------------

func testHTTP(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")
	b := s.online(t, bob, "y")
	a.Send(`<message type='chat' id='h1' to='` + bob.bare() + `'><body>count me</body></message>`)
	b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "h1" })

	base := "http://" + s.d.Addr("http")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	positive := func(re string) {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("/metrics has no %s", re)
			return
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 {
			t.Errorf("/metrics: %s = %s, want > 0", re, m[1])
		}
	}
	positive(`xmppd_logins_total`)
	positive(`xmppd_stanzas_routed_total\{kind="message"\}`)
	positive(`xmppd_stanzas_routed_total\{kind="iq"\}`)
	positive(`xmppd_stanzas_routed_total\{kind="presence"\}`)
}

// --- shutdown and restart ---------------------------------------------------

func testShutdownRestart(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")
	b := s.online(t, bob, "laptop")
	befriend(t, a, b)
	r, _ := iq(a, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+bob.bare()+`' name='Bob'><group>Friends</group></item></query>`)
	mustResult(t, r)
	ver := *rosterGet(t, a).Ver
	r, _ = iq(a, "set", "", `<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>`)
	mustResult(t, r)
	r, _ = iq(a, "set", "", `<query xmlns='jabber:iq:private'><x xmlns='urn:example:x'>kept</x></query>`)
	mustResult(t, r)
	carol := s.newUser(t)
	r, _ = iq(a, "set", "", `<block xmlns='urn:xmpp:blocking'><item jid='`+carol.bare()+`'/></block>`)
	mustResult(t, r)
	// An explicit PEP subscription (XEP-0060 §6.1) of bob to alice's node.
	mustResult(t, publish(a, nodeNick, "current", `<nick xmlns='`+nodeNick+`'>A</nick>`, ""))
	r, _ = iq(b, "set", alice.bare(), `<pubsub xmlns='`+nsPubsub+`'><subscribe node='`+nodeNick+`' jid='`+bob.bare()+`'/></pubsub>`)
	mustResult(t, r)
	cert := a.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
	// a connection that has not authenticated yet
	pending := xmpptest.Dial(t, s.c2s())
	pending.Open(domain)
	pending.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })

	// SIGTERM: every stream gets system-shutdown, Run returns nil
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- s.Stop() }()
	for _, c := range []*xmpptest.Client{a, b} {
		if cond := c.ExpectStreamError(); cond != "system-shutdown" {
			t.Errorf("%s: stream error %q at shutdown, want system-shutdown", c.JID, cond)
		}
		c.Send(`</stream:stream>`)
	}
	if cond := pending.ExpectStreamError(); cond != "system-shutdown" {
		t.Errorf("unauthenticated stream: stream error %q at shutdown, want system-shutdown", cond)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	t.Logf("shutdown took %v", time.Since(began).Round(time.Millisecond))
	// Every goroutine Run started was stopped and waited for: the
	// blocking sweeper too, which used to be left running.
	if stacks := allStacks(); strings.Contains(stacks, "(*Blocking).Run") {
		t.Errorf("the blocking sweeper still runs after Run returned:\n%s", stacks)
	}

	// the same data dir (and database) again
	s.restart(t)
	a = s.login(t, alice, "phone") // the account and its password survived
	if got := a.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, cert) {
		t.Errorf("a new certificate after the restart: it must be kept in the data dir")
	}
	q := rosterGet(t, a)
	it := onlyItem(t, q)
	wantItem(t, it, bob.bare(), "both", "")
	if it.Name != "Bob" || len(it.Groups) != 1 || it.Groups[0] != "Friends" {
		t.Errorf("roster item after restart %+v", it)
	}
	if *q.Ver != ver {
		t.Errorf("roster ver %q after restart, was %q", *q.Ver, ver)
	}
	r, _ = iq(a, "get", "", `<query xmlns='jabber:iq:roster' ver='`+ver+`'/>`)
	mustResult(t, r)
	if strings.TrimSpace(r.Inner) != "" {
		t.Errorf("roster get with the ver from before the restart: want an empty result, got %v", r)
	}
	r, _ = iq(a, "get", "", `<vCard xmlns='vcard-temp'/>`)
	if mustResult(t, r); !strings.Contains(r.Inner, "<FN>Alice</FN>") {
		t.Errorf("vCard after restart %v", r)
	}
	r, _ = iq(a, "get", "", `<query xmlns='jabber:iq:private'><x xmlns='urn:example:x'/></query>`)
	if mustResult(t, r); !strings.Contains(r.Inner, "kept") {
		t.Errorf("private data after restart %v", r)
	}
	r, _ = iq(a, "get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
	if got := blockItems(t, r, "blocklist"); len(got) != 1 || got[0] != carol.bare() {
		t.Errorf("blocklist after restart %v", got)
	}
	// the subscription works: bob comes back and alice sees him
	a.Available()
	b = s.online(t, bob, "laptop")
	a.Expect("bob after the restart", isPresence("", b.JID))
	// The PEP subscription lasted: bob, without caps interest, is told.
	r, _ = iq(b, "get", alice.bare(), `<pubsub xmlns='`+nsPubsub+`'><subscriptions/></pubsub>`)
	if mustResult(t, r); !strings.Contains(r.Inner, `node="`+nodeNick+`" jid="`+bob.bare()+`" subscription="subscribed"`) {
		t.Errorf("bob's subscriptions after the restart: %v", r)
	}
	mustResult(t, publish(a, nodeNick, "current", `<nick xmlns='`+nodeNick+`'>After</nick>`, ""))
	until(b, "the subscribed node's notification after the restart", isEvent(alice.bare(), "After"))
}

// A start that fails half-way (here: the C2S address is taken) returns an
// error naming the variable, closes what it had opened, and does not panic.
func TestNewFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg, err := config.LoadFrom(map[string]string{
		"XMPPD_DATA_DIR":            dir,
		"XMPPD_C2S_ADDR":            busy.Addr().String(),
		"XMPPD_C2S_DIRECT_TLS_ADDR": "127.0.0.1:0",
		"XMPPD_HTTP_ADDR":           "127.0.0.1:0",
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_ADMIN_SOCKET":        filepath.Join(dir, "admin.sock"),
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || d != nil || !strings.HasPrefix(err.Error(), "XMPPD_C2S_ADDR:") {
		t.Fatalf("New with a taken address: %v, %v", d, err)
	}
	// the store was closed: a second start on the same data dir works
	cfg.C2SAddr = "127.0.0.1:0"
	d, err = daemon.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// allStacks is the stack of every goroutine.
func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// testSessionsPerAccount: XMPPD_SESSIONS_PER_ACCOUNT (default 10) bound
// resources, and one more gets resource-constraint at bind.
func testSessionsPerAccount(t *testing.T, s *daemonUnderTest) {
	u := s.newUser(t)
	for i := range 10 {
		s.login(t, u, fmt.Sprintf("r%d", i))
	}
	c := xmpptest.Dial(t, s.c2s())
	c.Authenticate(u.num, u.pass)
	c.Send(`<iq type='set' id='b11'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r10</resource></bind></iq>`)
	e := c.Expect("the bind answer", func(e xmpptest.Elem) bool { return e.Attr("id") == "b11" })
	wantError(t, e, "wait", "resource-constraint")
}

// TestC2SRate: XMPPD_C2S_RATE reaches the sessions. A client that sends
// more than its burst (ten seconds' worth) waits, as the server's metric
// of reads held back shows, and loses nothing.
func TestC2SRate(t *testing.T) {
	s := startDaemon(t, noticeEnv(t, "", map[string]string{"XMPPD_C2S_RATE": "4096"}))
	alice, bob := s.newUser(t), s.newUser(t)
	a := s.login(t, alice, "x")
	b := s.online(t, bob, "y")
	body := strings.Repeat("r", 1000)
	const n = 48 // 48 KB: 8 KB over the burst of 40 KB, two seconds' wait
	var msgs strings.Builder
	for i := range n {
		fmt.Fprintf(&msgs, `<message type='chat' id='rate%d' to='%s'><body>%s</body></message>`, i, bob.bare(), body)
	}
	a.Send(msgs.String())
	for i := range n {
		e, err := b.TryNext(20 * time.Second)
		if err != nil || e.Attr("id") != fmt.Sprint("rate", i) {
			t.Fatalf("message %d: %v %v", i, e, err)
		}
	}
	a.Sync() // still open
	resp, err := http.Get("http://" + s.d.Addr("http") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^xmppd_rate_limited_seconds_total (\S+)$`).FindSubmatch(metrics)
	if m == nil {
		t.Fatal("/metrics has no xmppd_rate_limited_seconds_total")
	}
	if v, _ := strconv.ParseFloat(string(m[1]), 64); v < 1 {
		t.Errorf("reads waited %v s in all, want the 2 s that 8 KB over the burst at 4096 bytes/s take", v)
	}
}
