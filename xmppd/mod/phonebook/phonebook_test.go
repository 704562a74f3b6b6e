package phonebook

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"
)

// Test vectors of Ver, computed outside Go from Quicksy's definition
// (Entry.statusQuo), e.g.
//
//	printf '+821012345678\x1e+821012345678@example.com' | openssl sha1 -binary | base64
func TestVer(t *testing.T) {
	for _, tc := range []struct {
		entries []Entry
		want    string
	}{
		{nil, "2jmj7l5rSw0yVb/vlWAYkK/YBwk="},
		{[]Entry{{"+821012345678", []string{"+821012345678@example.com"}}}, "pj0qGVprJch5fB0HUUNN3t5PNYI="},
		{[]Entry{
			{"+14155550100", []string{"+14155550100@example.com"}},
			{"+821012345678", []string{"+821012345678@example.com"}},
		}, "iAUurM+Zj94F2to3RaNtSn79nw0="},
		// Several JIDs for a number, and a number with none.
		{[]Entry{
			{"+14155550100", []string{"a@example.com", "b@example.org"}},
			{"+821012345678", nil},
		}, "PwOQPa08xbbz9wmmIq55C0Mliis="},
	} {
		if got := Ver(tc.entries); got != tc.want {
			t.Errorf("Ver(%v) = %s, want %s", tc.entries, got, tc.want)
		}
	}
}

// fakeStore has the discoverable numbers; it records how many numbers
// each lookup named.
type fakeStore struct {
	mu      sync.Mutex
	found   map[string]bool
	lookups []int
	err     error
}

func (s *fakeStore) Discoverable(_ context.Context, numbers []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups = append(s.lookups, len(numbers))
	if s.err != nil {
		return nil, s.err
	}
	var out []string
	for _, n := range numbers {
		if s.found[n] {
			out = append(out, n)
		}
	}
	// Unsorted on purpose: the module sorts.
	slices.Reverse(out)
	return out, nil
}

const domain = "example.com"

// fixture is the module on a fake router with a store and a clock.
type fixture struct {
	m     *Module
	store *fakeStore
	now   time.Time
}

func newFixture(t *testing.T, found ...string) *fixture {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: &fakeStore{found: map[string]bool{}}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, n := range found {
		f.store.found[n] = true
	}
	f.m = New(modtest.NewRouter(domain), parser, f.store)
	f.m.Now = func() time.Time { return f.now }
	h := router.NewHooks()
	if err := f.m.Register(h); err != nil {
		t.Fatal(err)
	}
	return f
}

// book is a phone-book query's payload.
func book(ver string, numbers ...string) string {
	var b strings.Builder
	b.WriteString(`<phone-book xmlns='` + NS + `'`)
	if ver != "" {
		b.WriteString(` ver='` + ver + `'`)
	}
	b.WriteString(`>`)
	for _, n := range numbers {
		b.WriteString(`<entry number='` + n + `'/>`)
	}
	b.WriteString(`</phone-book>`)
	return b.String()
}

// answer is a phone-book answer as the app reads it (Entry.ofPhoneBook:
// every child of an entry is a JID).
type answer struct {
	XMLName xml.Name `xml:"im.quicksy.synchronization:0 phone-book"`
	Ver     string   `xml:"ver,attr"`
	Entries []struct {
		Number string   `xml:"number,attr"`
		JIDs   []string `xml:",any"`
	} `xml:"entry"`
}

func (f *fixture) ask(t *testing.T, from, payload string) ([]byte, error) {
	t.Helper()
	return f.m.phoneBook(t.Context(), modtest.IQ(t, from, "api."+domain, "get", payload))
}

func (f *fixture) entries(t *testing.T, from, payload string) (answer, []Entry) {
	t.Helper()
	res, err := f.ask(t, from, payload)
	if err != nil {
		t.Fatalf("phone book: %v", err)
	}
	var a answer
	modtest.Unmarshal(t, res, &a)
	var es []Entry
	for _, e := range a.Entries {
		es = append(es, Entry{Number: e.Number, JIDs: e.JIDs})
	}
	return a, es
}

const asker = "+821011110000@" + domain + "/phone"

// The answer has the numbers that are found, in E.164 whatever form they
// were asked in, sorted, each with its JID, once; what is not a number is
// skipped; ver is Quicksy's over the answer, and the same ver again gets
// no payload.
func TestPhoneBook(t *testing.T) {
	f := newFixture(t, "+821012345678", "+14155550100", "+821098765432")
	a, got := f.entries(t, asker, book("",
		"010-1234-5678", "+1 415-555-0100", "hello", "", "+1", "+821012345678", "+821055550000",
		strings.Repeat("9", 5000), "+82 10 9876 5432")+"")
	want := []Entry{
		{"+14155550100", []string{"+14155550100@" + domain}},
		{"+821012345678", []string{"+821012345678@" + domain}},
		{"+821098765432", []string{"+821098765432@" + domain}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if a.Ver != Ver(want) {
		t.Fatalf("ver %q, want %q", a.Ver, Ver(want))
	}
	if l := f.store.lookups; len(l) != 1 || l[0] != 4 {
		t.Fatalf("store lookups %v, want one of 4 distinct numbers", l)
	}

	// The app's statusQuo over what it has: unchanged, no payload.
	res, err := f.ask(t, asker, book(Ver(want), "+821012345678", "+14155550100", "+821098765432", "+821055550000"))
	if err != nil || res != nil {
		t.Fatalf("unchanged ver: %q, %v; want an empty result", res, err)
	}
	// A ver that is garbage, or stale, gets the answer.
	for _, ver := range []string{"garbage", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", strings.Repeat("=", 4000), "&lt;&amp;"} {
		if _, got := f.entries(t, asker, book(ver, "+821012345678")); len(got) != 1 {
			t.Fatalf("ver %.20q: entries %v", ver, got)
		}
	}
	// Nobody found: an empty phone-book with the ver of nothing.
	a, got = f.entries(t, asker, book("", "+821055550000", "nonsense"))
	if len(got) != 0 || a.Ver != "2jmj7l5rSw0yVb/vlWAYkK/YBwk=" {
		t.Fatalf("nobody found: %+v", a)
	}
	// Entries of another namespace, and other children, are not entries.
	_, got = f.entries(t, asker, `<phone-book xmlns='`+NS+`'><entry xmlns='urn:other' number='+821012345678'/><x number='+14155550100'/><entry number='+821098765432'><jid>ignored@example.org</jid></entry></phone-book>`)
	if len(got) != 1 || got[0].Number != "+821098765432" {
		t.Fatalf("foreign children: %v", got)
	}
}

// Only the server's own users may ask.
func TestPhoneBookNotAuthorized(t *testing.T) {
	f := newFixture(t, "+821012345678")
	for _, from := range []string{"someone@example.org/res", "+821012345678@example.org/res", domain, "api." + domain} {
		_, err := f.ask(t, from, book("", "+821012345678"))
		if c := modtest.Condition(t, err); c != stanza.NotAuthorized {
			t.Errorf("from %s: %v, want not-authorized", from, err)
		}
	}
	if len(f.store.lookups) != 0 {
		t.Fatalf("looked up for strangers: %v", f.store.lookups)
	}
}

// The daily cap counts distinct numbers per account: the same phone book
// again costs nothing, a number more than the cap is refused (and counts
// nothing), a day later it starts afresh; other accounts have their own.
func TestPhoneBookPerDay(t *testing.T) {
	f := newFixture(t, "+821012345678")
	f.m.PerDay = 3
	three := []string{"+821012345678", "010-1234-5679", "+82 10 1234 5670"}
	policy := func(what string, payload string) {
		t.Helper()
		_, err := f.ask(t, asker, payload)
		if c := modtest.Condition(t, err); c != stanza.PolicyViolation {
			t.Fatalf("%s: %v, want policy-violation", what, err)
		}
	}
	for i := range 3 {
		if _, err := f.ask(t, asker, book("", append(three, "not a number", three[0])...)); err != nil {
			t.Fatalf("the same three numbers, %d: %v", i, err)
		}
	}
	if u := f.m.quota.used("+821011110000"); u != 3 {
		t.Fatalf("used %d, want 3", u)
	}
	policy("a fourth number", book("", "+821012345671"))
	policy("a fourth in the same form", book("", append(three, "01012345672")...))
	if _, err := f.ask(t, asker, book("", "01012345678")); err != nil {
		t.Fatalf("an old number after a refusal: %v", err)
	}
	if _, err := f.ask(t, "+821022220000@"+domain+"/x", book("", "+821012345671")); err != nil {
		t.Fatalf("another account: %v", err)
	}
	f.now = f.now.Add(day)
	if _, err := f.ask(t, asker, book("", "+821012345671", "+821012345672", "+821012345673")); err != nil {
		t.Fatalf("a day later: %v", err)
	}
	// More distinct numbers than a day's cap at once: refused before any
	// lookup, and counted not at all.
	f2 := newFixture(t)
	f2.m.PerDay = 3
	_, err := f2.ask(t, asker, book("", "+821012345671", "+821012345672", "+821012345673", "+821012345674"))
	if c := modtest.Condition(t, err); c != stanza.PolicyViolation {
		t.Fatalf("four at once: %v", err)
	}
	if u := f2.m.quota.used("+821011110000"); u != 0 || len(f2.store.lookups) != 0 {
		t.Fatalf("a refused book counted %d numbers, %v lookups", u, f2.store.lookups)
	}
}

// tenThousand is a phone book of 10,000 distinct valid numbers.
func tenThousand() []string {
	out := make([]string, 10000)
	for i := range out {
		out[i] = fmt.Sprintf("+82105555%04d", i)
	}
	return out
}

// A 10,000-entry phone book is answered in one lookup when the cap
// allows it, and refused without a lookup when it does not: what is
// parsed and kept stops at the cap.
func TestPhoneBookTenThousand(t *testing.T) {
	numbers := tenThousand()
	f := newFixture(t, numbers[0], numbers[4321], numbers[9999])
	f.m.PerDay = 0
	_, got := f.entries(t, asker, book("", numbers...))
	if len(got) != 3 || got[0].Number != numbers[0] || got[2].Number != numbers[9999] {
		t.Fatalf("entries %v", got)
	}
	if l := f.store.lookups; len(l) != 1 || l[0] != 10000 {
		t.Fatalf("lookups %v, want one of 10000", l)
	}

	f = newFixture(t, numbers[0])
	req, err := f.m.read(modtest.IQ(t, asker, "api."+domain, "get", book("", numbers...)), DefaultPerDay)
	if !errors.Is(err, errTooMany) || len(req.numbers) != 0 {
		t.Fatalf("read beyond the cap: %d numbers, %v", len(req.numbers), err)
	}
	_, err = f.ask(t, asker, book("", numbers...))
	if c := modtest.Condition(t, err); c != stanza.PolicyViolation || len(f.store.lookups) != 0 {
		t.Fatalf("10,000 numbers with the default cap: %v, lookups %v", err, f.store.lookups)
	}
	// 10,000 entries that are the same few numbers are few numbers.
	same := make([]string, 10000)
	for i := range same {
		same[i] = numbers[i%3]
	}
	if _, got := f.entries(t, asker, book("", same...)); len(got) != 1 {
		t.Fatalf("10,000 entries of 3 numbers: %v", got)
	}
}

// A store failure is an internal error whose text names no number.
func TestPhoneBookStoreError(t *testing.T) {
	f := newFixture(t)
	f.store.err = errors.New("database down")
	_, err := f.ask(t, asker, book("", "+821012345678"))
	var se stanza.Error
	if err == nil || errors.As(err, &se) || strings.Contains(err.Error(), "1012345678") {
		t.Fatalf("store failure: %v", err)
	}
}

// api.DOMAIN is a host, a disco item of the domain, and says what it is.
func TestRegisterAndDisco(t *testing.T) {
	parser, _ := auth.NewNumberParser("KR", nil)
	m := New(modtest.NewRouter(domain), parser, &fakeStore{})
	h := router.NewHooks()
	if err := m.Register(h); err != nil || h.Err() != nil {
		t.Fatal(err, h.Err())
	}
	sc, ok := h.Hosts()["api."+domain]
	if !ok {
		t.Fatalf("hosts %v", h.Hosts())
	}
	if items := h.DiscoItems(router.ScopeServer); len(items) != 1 || items[0].JID != "api."+domain {
		t.Fatalf("server items %v", items)
	}
	if !slices.Contains(h.DiscoFeatures(sc), NS) {
		t.Fatalf("host features %v", h.DiscoFeatures(sc))
	}
	res, err := m.info(t.Context(), modtest.IQ(t, asker, "api."+domain, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`))
	if err != nil || !strings.Contains(string(res), `var="`+NS+`"`) || !strings.Contains(string(res), `category="directory"`) {
		t.Fatalf("disco#info: %s, %v", res, err)
	}
	_, err = m.info(t.Context(), modtest.IQ(t, asker, "api."+domain, "get", `<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>`))
	if c := modtest.Condition(t, err); c != stanza.ItemNotFound {
		t.Fatalf("disco#info of a node: %v", err)
	}
	res, err = m.items(t.Context(), modtest.IQ(t, asker, "api."+domain, "get", `<query xmlns='http://jabber.org/protocol/disco#items'/>`))
	if err != nil || strings.Contains(string(res), "<item") {
		t.Fatalf("disco#items: %s, %v", res, err)
	}
}
