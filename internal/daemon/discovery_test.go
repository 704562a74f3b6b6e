package daemon_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"dialtone/auth"
	"dialtone/internal/quicksytest"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

const (
	nsSync       = "im.quicksy.synchronization:0"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	apiHost      = "api." + domain
)

// phoneBook is a phone-book query's payload with a ver and raw entries.
func phoneBook(ver string, entries ...string) string {
	var b strings.Builder
	b.WriteString(`<phone-book xmlns='` + nsSync + `' ver='` + ver + `'>`)
	for _, e := range entries {
		b.WriteString(`<entry number='` + e + `'/>`)
	}
	b.WriteString(`</phone-book>`)
	return b.String()
}

// entryNumbers returns the numbers of a phone-book answer, in order, and
// checks that each entry's JID is its number's.
func entryNumbers(t *testing.T, e xmpptest.Elem) []string {
	t.Helper()
	mustResult(t, e)
	var a struct {
		Book struct {
			Entries []struct {
				Number string `xml:"number,attr"`
				JID    string `xml:"jid"`
			} `xml:"entry"`
		} `xml:"im.quicksy.synchronization:0 phone-book"`
	}
	if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &a); err != nil {
		t.Fatalf("answer %v: %v", e, err)
	}
	var out []string
	for _, en := range a.Book.Entries {
		if en.JID != en.Number+"@"+domain {
			t.Errorf("entry %s has JID %q", en.Number, en.JID)
		}
		out = append(out, en.Number)
	}
	return out
}

// TestContactDiscovery runs contact discovery (SPEC.md "App API") on each
// store over real TLS sockets: the app's own sync (quicksytest), numbers
// in other forms, opting out, bad input and the daily cap.
func TestContactDiscovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{"XMPPD_DISCOVERY_PER_DAY": "40"}))
			t.Run("disco", func(t *testing.T) { testDiscoveryDisco(t, s) })
			t.Run("sync", func(t *testing.T) { testDiscoverySync(t, s) })
			t.Run("bad_input", func(t *testing.T) { testDiscoveryBadInput(t, s) })
			t.Run("per_day", func(t *testing.T) { testDiscoveryPerDay(t, s) })
			t.Run("account_page_switch", func(t *testing.T) { testDiscoveryWebSwitch(t, s) })
		})
	}
}

// api.DOMAIN is an item of the domain and says what it serves.
func testDiscoveryDisco(t *testing.T, s *daemonUnderTest) {
	c := s.login(t, s.newUser(t), "disco")
	r, _ := iq(c, "get", domain, `<query xmlns='`+nsDiscoItems+`'/>`)
	mustResult(t, r)
	if !strings.Contains(r.Inner, `jid="`+apiHost+`"`) {
		t.Errorf("disco#items of %s: %v, want %s", domain, r, apiHost)
	}
	if d := discoOf(t, c, apiHost, ""); !d.has(nsSync) {
		t.Errorf("disco#info of %s: %+v, want %s", apiHost, d, nsSync)
	}
}

// The app's sync finds the active accounts of its phone book that did not
// opt out; the same phone book again is "unchanged"; opting out and back
// in shows in the next sync; numbers in other forms are answered in E.164.
func testDiscoverySync(t *testing.T, s *daemonUnderTest) {
	ctx := context.Background()
	alice, bob, dave := s.activeUser(t), s.activeUser(t), s.activeUser(t)
	carol := s.newUser(t) // unclaimed: never logged in
	latent := s.newNumber()
	if err := s.d.DB.SetHidden(ctx, auth.Number(dave.num), true); err != nil {
		t.Fatal(err)
	}
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	c := s.login(t, alice, "quicksy")
	book := []string{bob.num, carol.num, dave.num, latent}

	want := func(what string, got quicksytest.SyncResult, numbers ...string) {
		t.Helper()
		var gotNums []string
		for _, e := range got.Entries {
			gotNums = append(gotNums, e.Number)
			if len(e.JIDs) != 1 || e.JIDs[0] != e.Number+"@"+domain {
				t.Errorf("%s: entry %+v", what, e)
			}
		}
		if got.Type != "result" || got.Unchanged || !slices.Equal(gotNums, numbers) {
			t.Fatalf("%s: %+v, want entries %v", what, got, numbers)
		}
	}
	want("first sync", app.SyncPhoneBook(t, c, book), bob.num)
	if got := app.SyncPhoneBook(t, c, book); got.Type != "result" || !got.Unchanged {
		t.Fatalf("the same phone book again: %+v, want unchanged", got)
	}
	if err := s.d.DB.SetHidden(ctx, auth.Number(bob.num), true); err != nil {
		t.Fatal(err)
	}
	want("bob hidden", app.SyncPhoneBook(t, c, book))
	for _, u := range []user{bob, dave} {
		if err := s.d.DB.SetHidden(ctx, auth.Number(u.num), false); err != nil {
			t.Fatal(err)
		}
	}
	drain(s.login(t, carol, "first")) // carol is active from now on
	all := []string{bob.num, carol.num, dave.num}
	slices.Sort(all)
	want("all shown, carol active", app.SyncPhoneBook(t, c, book), all...)
	if got := app.SyncPhoneBook(t, c, book); !got.Unchanged {
		t.Fatalf("unchanged again: %+v", got)
	}

	// Privacy: a number that was only ever in phone books is nowhere, not
	// in the store and not in the (debug level) log.
	if _, err := s.d.DB.Account(ctx, auth.Number(latent)); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("an account for a number only asked about: %v", err)
	}
	if strings.Contains(s.log.String(), strings.TrimPrefix(latent, "+")) {
		t.Errorf("the log names a number of a phone book")
	}

	// National and spaced forms, each form of one number once.
	r, _ := iq(c, "get", apiHost, phoneBook("", bob.national(), strings.Replace(bob.num, "+82", "+82 ", 1), latent))
	if got := entryNumbers(t, r); !slices.Equal(got, []string{bob.num}) {
		t.Fatalf("national forms: %v, want [%s]", got, bob.num)
	}
}

// 10,000 entries (as many as fit a stanza at the default size limit),
// nearly all of them not numbers, and garbage vers, get a plain answer;
// so does a phone book with nothing in it.
func testDiscoveryBadInput(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.activeUser(t), s.activeUser(t)
	c := s.login(t, alice, "bad")
	entries := make([]string, 10000)
	for i := range entries {
		switch i % 1000 {
		case 0:
			entries[i] = bob.national()
		case 1:
			entries[i] = "+1"
		default:
			entries[i] = fmt.Sprint(i % 10)
		}
	}
	payload := phoneBook("&lt;garbage&gt;", entries...)
	if len(payload) > 250<<10 {
		t.Fatalf("the phone book is %d bytes, over the stanza limit", len(payload))
	}
	r, _ := iq(c, "get", apiHost, payload)
	if got := entryNumbers(t, r); !slices.Equal(got, []string{bob.num}) {
		t.Fatalf("10,000 entries: %v, want [%s]", got, bob.num)
	}
	r, _ = iq(c, "get", apiHost, `<phone-book xmlns='`+nsSync+`'><entry/><entry number=''/><foo/></phone-book>`)
	if got := entryNumbers(t, r); len(got) != 0 {
		t.Fatalf("no numbers: %v", got)
	}
	// A set is not a query.
	r, _ = iq(c, "set", apiHost, phoneBook("", bob.num))
	wantError(t, r, "cancel", "service-unavailable")
}

// XMPPD_DISCOVERY_PER_DAY (40 here) counts distinct numbers per account:
// the same phone book again is free, one more number is refused.
func testDiscoveryPerDay(t *testing.T, s *daemonUnderTest) {
	alice := s.activeUser(t)
	c := s.login(t, alice, "cap")
	var book []string
	for range 41 {
		book = append(book, s.newNumber())
	}
	r, _ := iq(c, "get", apiHost, phoneBook("", book...))
	wantError(t, r, "modify", "policy-violation")
	for i := range 2 {
		r, _ = iq(c, "get", apiHost, phoneBook("", book[:40]...))
		if got := entryNumbers(t, r); len(got) != 0 {
			t.Fatalf("sync %d of 40 latent numbers: %v", i, got)
		}
	}
	r, _ = iq(c, "get", apiHost, phoneBook("", book[40]))
	wantError(t, r, "modify", "policy-violation")
	// Another account has its own count.
	other := s.login(t, s.activeUser(t), "cap")
	r, _ = iq(other, "get", apiHost, phoneBook("", book[40]))
	mustResult(t, r)
}

// A user of another server cannot ask api.DOMAIN. Today the federation
// serves only the domain itself, so the peer's link to api.DOMAIN is
// refused (host-unknown) and its user gets remote-server-timeout from its
// own server; the module's own not-authorized for remote askers
// (TestPhoneBookNotAuthorized in mod/phonebook) is what answers once
// federation serves component hosts, and this test then wants it.
func TestContactDiscoveryRemote(t *testing.T) {
	const peer = "peer.example.test"
	ports := map[string]string{domain: testbin.FreePort(t), peer: testbin.FreePort(t)}
	// api.DOMAIN is served by DOMAIN's server (in DNS: its SRV record).
	routes := domain + "=127.0.0.1:" + ports[domain] + "," + apiHost + "=127.0.0.1:" + ports[domain] + "," +
		peer + "=127.0.0.1:" + ports[peer]
	federated := func(d, other string, env map[string]string) map[string]string {
		env["XMPPD_DOMAIN"] = d
		env["XMPPD_S2S_ADDR"] = "127.0.0.1:" + ports[d]
		env["XMPPD_S2S_ROUTES"] = routes
		env["XMPPD_S2S_INSECURE_DOMAINS"] = other
		return env
	}
	s := startDaemon(t, federated(domain, peer, noticeEnv(t, "", nil)))
	// The peer accepts api.DOMAIN's self-signed certificate as it does
	// DOMAIN's: each domain is listed (SPEC: XMPPD_S2S_INSECURE_DOMAINS).
	p := startDaemon(t, federated(peer, domain+","+apiHost, noticeEnv(t, "", nil)))
	local := s.activeUser(t)
	remote := p.newUser(t)
	c, cond := authAt(t, p.c2s(), peer, remote.num, remote.pass, "x")
	if cond != "" {
		t.Fatalf("login on %s: %s", peer, cond)
	}
	r, _ := iq(c, "get", apiHost, phoneBook("", local.num))
	// The answer comes from api.DOMAIN over federation: the refusal of
	// the phone-book module, not a link that could not be made.
	if se := errorOf(t, r); se.Cond != "not-authorized" || r.Attr("from") != apiHost {
		t.Fatalf("a remote user's phone book: %v, want not-authorized from %s", r, apiHost)
	}
	if strings.Contains(r.Inner, local.num+"@") {
		t.Fatalf("the refusal names the number: %v", r)
	}
}

// The switch on the account page opts the account out of discovery and
// back in, with the page's form token.
func testDiscoveryWebSwitch(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.activeUser(t), s.activeUser(t)
	c := s.login(t, alice, "web")
	found := func() []string {
		t.Helper()
		r, _ := iq(c, "get", apiHost, phoneBook("", bob.num))
		return entryNumbers(t, r)
	}
	if got := found(); len(got) != 1 {
		t.Fatalf("before the switch: %v", got)
	}
	web := clientFrom(t, "127.0.0.1")
	base := "http://" + s.d.Addr("http")
	home := do(t, web, "GET", base+"/", nil, "")
	m := csrfField.FindStringSubmatch(home.body)
	if m == nil {
		t.Fatalf("home page: %d, no form token", home.code)
	}
	form := []string{"Content-Type: application/x-www-form-urlencoded"}
	if a := do(t, web, "POST", base+"/login", form, url.Values{"csrf": {m[1]}, "phone": {bob.num}, "password": {bob.pass}}.Encode()); a.code != http.StatusSeeOther {
		t.Fatalf("web login: %d", a.code)
	}
	flip := func(findable string) {
		t.Helper()
		page := do(t, web, "GET", base+"/account", nil, "")
		m := csrfField.FindStringSubmatch(page.body)
		if m == nil || !strings.Contains(page.body, `name="findable" value="`+findable+`"`) {
			t.Fatalf("account page %d has no switch to findable=%s", page.code, findable)
		}
		a := do(t, web, "POST", base+"/account/discovery", form, url.Values{"csrf": {m[1]}, "findable": {findable}}.Encode())
		if a.code != http.StatusSeeOther {
			t.Fatalf("switch to findable=%s: %d %s", findable, a.code, a.body)
		}
	}
	flip("no")
	if got := found(); len(got) != 0 {
		t.Fatalf("after hiding on the account page: %v", got)
	}
	flip("yes")
	if got := found(); len(got) != 1 {
		t.Fatalf("after showing again on the account page: %v", got)
	}
}
