package web

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/webclient"
	"dialtone/sms"
)

// memLinks is an in-memory LinkStore and sms.LoginLinkStore.
type memLinks struct {
	mu    sync.Mutex
	links map[string]auth.LoginLink
	fail  error
}

func (s *memLinks) CreateLoginLink(_ context.Context, l auth.LoginLink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.links[l.Hash] = l
	return nil
}

func (s *memLinks) LoginLink(_ context.Context, hash string) (auth.LoginLink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return auth.LoginLink{}, s.fail
	}
	l, ok := s.links[hash]
	if !ok {
		return auth.LoginLink{}, auth.ErrNotFound
	}
	return l, nil
}

func (s *memLinks) UseLoginLink(_ context.Context, hash string, now time.Time) (auth.LoginLink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return auth.LoginLink{}, s.fail
	}
	l, ok := s.links[hash]
	if !ok || !l.Used.IsZero() || !now.Before(l.Expires) {
		return auth.LoginLink{}, auth.ErrNotFound
	}
	l.Used = now
	s.links[hash] = l
	return l, nil
}

// memTickets is an in-memory TicketStore.
type memTickets struct {
	mu      sync.Mutex
	tickets []auth.Ticket
}

func (s *memTickets) AddTicket(_ context.Context, t auth.Ticket, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickets = append(s.tickets, t)
	return nil
}

func (s *memTickets) all() []auth.Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]auth.Ticket(nil), s.tickets...)
}

const testPublicURL = "https://chat.example"

// chatFixture is a fixture with the web client, tickets and links on, and
// a PromotePending that makes a pending password current as the store
// does.
type chatFixture struct {
	*fixture
	links    *memLinks
	tickets  *memTickets
	promoted []auth.Number
}

func newChatFixture(t *testing.T, edit func(*Options)) *chatFixture {
	t.Helper()
	c := &chatFixture{links: &memLinks{links: map[string]auth.LoginLink{}}, tickets: &memTickets{}}
	c.fixture = newFixtureWith(t, false, func(o *Options) {
		o.PublicURL = testPublicURL
		o.WebSocket = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusUpgradeRequired) }
		o.WebClient = true
		o.Tickets = c.tickets
		o.Links = c.links
		o.PromotePending = func(ctx context.Context, n auth.Number, pending auth.Credentials) (int64, error) {
			s := c.fixture.store
			s.mu.Lock()
			defer s.mu.Unlock()
			a, ok := s.accounts[n]
			if !ok || !reflect.DeepEqual(a.Pending, pending) {
				return 0, auth.ErrNotFound
			}
			a.Credentials, a.Pending = pending, auth.Credentials{}
			a.Generation++
			s.accounts[n] = a
			c.promoted = append(c.promoted, n)
			return a.Generation, nil
		}
		if edit != nil {
			edit(o)
		}
	})
	return c
}

var chatConfigJSON = regexp.MustCompile(`(?s)<script type="application/json" id="dialtone-config">(.*?)</script>`)

// chatConfigOf returns the settings the chat page gives dialtone.js.
func chatConfigOf(t *testing.T, body string) chatConfig {
	t.Helper()
	m := chatConfigJSON.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no settings in %q", body)
	}
	var c chatConfig
	if err := json.Unmarshal([]byte(m[1]), &c); err != nil {
		t.Fatalf("settings %q: %v", m[1], err)
	}
	return c
}

// GET /chat: Converse.js from this server only, set up for the public
// URL's WebSocket and the domain; a browser with a web session is told
// to log in with tickets.
func TestChatPage(t *testing.T) {
	f := newChatFixture(t, nil)
	b := f.browser(t)
	a := b.get("/chat")
	if a.code != 200 || a.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatal(a)
	}
	csp := a.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self' wss://chat.example/xmpp-websocket;",
		"frame-ancestors 'none'", "base-uri 'none'", "font-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, never := range []string{"unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(strings.ReplaceAll(csp, "wss://chat.example/xmpp-websocket", ""), never) {
			t.Errorf("CSP %q allows %s", csp, never)
		}
	}
	if a.header.Get("X-Frame-Options") != "DENY" || a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", a.header)
	}
	cfg := chatConfigOf(t, a.body)
	want := chatConfig{Domain: testDomain, WebSocketURL: "wss://chat.example/xmpp-websocket",
		Assets: "/chat/assets/" + webclient.ID(), NumberURL: "/chat/number", CredentialsURL: "/chat/credentials", LogoutURL: "/logout"}
	if cfg != want {
		t.Errorf("settings\n got %+v\nwant %+v", cfg, want)
	}
	// Every script and stylesheet is one of ours, and is served.
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(a.body, -1)
	if len(refs) < 4 {
		t.Fatalf("references %q", refs)
	}
	for _, m := range refs {
		u := html.UnescapeString(m[1])
		if u == "/" {
			continue
		}
		if !strings.HasPrefix(u, want.Assets+"/") {
			t.Errorf("the page loads %s, not from /chat/assets", u)
			continue
		}
		if got := b.get(u); got.code != 200 {
			t.Errorf("GET %s: %d", u, got.code)
		}
	}

	// Logged in on the home page: tickets, for the session's account.
	f.store.setPassword(t, testNumber, "right-password")
	b.login(testNational, "right-password")
	cfg = chatConfigOf(t, b.get("/chat").body)
	if !cfg.Session || cfg.JID != string(testNumber)+"@"+testDomain || cfg.CSRF == "" {
		t.Errorf("settings with a session: %+v", cfg)
	}
	// The account page leads there.
	mustContain(t, "account page", b.get("/account").body, `action="/chat"`, `id="open-chat"`)
}

// XMPPD_WEB_CLIENT=false: no /chat, no "Open chat".
func TestChatOff(t *testing.T) {
	for name, edit := range map[string]func(*Options){
		"off":          func(o *Options) { o.WebClient = false },
		"no websocket": func(o *Options) { o.WebSocket = nil },
	} {
		f := newChatFixture(t, edit)
		b := f.browser(t)
		for _, p := range []string{"/chat", "/chat/number?phone=1", webclient.Path(chatAssetsPath, webclient.ConverseJS)} {
			if a := b.get(p); a.code != 404 {
				t.Errorf("%s: GET %s: %d", name, p, a.code)
			}
		}
		f.store.setPassword(t, testNumber, "right-password")
		b.login(testNational, "right-password")
		if strings.Contains(b.get("/account").body, "open-chat") {
			t.Errorf("%s: the account page offers the chat", name)
		}
	}
}

func TestChatNumber(t *testing.T) {
	f := newChatFixture(t, nil)
	b := f.browser(t)
	for typed, want := range map[string]answer{
		"010-1234-5678":         {code: 200, body: `{"jid":"+821012345678@chat.example"}`},
		"+82 10 1234 5678":      {code: 200, body: `{"jid":"+821012345678@chat.example"}`},
		" 01012345678 ":         {code: 200, body: `{"jid":"+821012345678@chat.example"}`},
		"12":                    {code: 400, body: `{"error":"` + msgBadNumber + `"}`},
		"":                      {code: 400, body: `{"error":"` + chatMsgNoNumber + `"}`},
		strings.Repeat("1", 65): {code: 400, body: `{"error":"` + chatMsgNoNumber + `"}`},
		"060-234-5678":          {code: 400, body: `{"error":"` + msgCannotReceive + `"}`},
	} {
		a := b.get("/chat/number?phone=" + url.QueryEscape(typed))
		var got, exp map[string]string
		json.Unmarshal([]byte(a.body), &got)
		json.Unmarshal([]byte(want.body), &exp)
		if a.code != want.code || !reflect.DeepEqual(got, exp) || a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%q: %d %s, want %d %s", typed, a.code, a.body, want.code, want.body)
		}
	}
}

// ticketPost asks for a ticket with the CSRF header token ("" for none).
func (b *browser) ticketPost(token string) answer {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.f.srv.URL+"/chat/credentials", nil)
	if token != "" {
		req.Header.Set(chatCSRFHeader, token)
	}
	return b.do(req)
}

// POST /chat/credentials: a ticket for the session's account, whose
// secret is derived like the account's password, for its generation; none
// without a session or its form token, or once the password changed.
func TestChatTicket(t *testing.T) {
	f := newChatFixture(t, nil)
	b := f.browser(t)
	if a := b.ticketPost(""); a.code != 401 {
		t.Fatalf("without a session: %v", a)
	}
	f.store.setPassword(t, testNumber, "right-password")
	b.login(testNational, "right-password")
	token := chatConfigOf(t, b.get("/chat").body).CSRF
	for _, bad := range []string{"", "nope", f.browser(t).token("/")} { // another browser's token, for nobody
		if a := b.ticketPost(bad); a.code != 403 {
			t.Errorf("token %q: %v", bad, a)
		}
	}
	if n := len(f.tickets.all()); n != 0 {
		t.Fatalf("%d tickets made without the token", n)
	}
	// Another browser's session with this one's token: refused.
	other := f.browser(t)
	other.login(testNational, "right-password")
	if a := other.ticketPost(token); a.code != 403 {
		t.Errorf("another browser with this token: %v", a)
	}

	a := b.ticketPost(token)
	var got map[string]string
	if err := json.Unmarshal([]byte(a.body), &got); a.code != 200 || err != nil {
		t.Fatalf("ticket: %v", a)
	}
	if got["jid"] != string(testNumber)+"@"+testDomain || len(got["password"]) < 22 || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("ticket %q, headers %v", got, a.header)
	}
	list := f.tickets.all()
	acct, _ := f.store.Account(t.Context(), testNumber)
	if len(list) != 1 {
		t.Fatalf("%d tickets stored", len(list))
	}
	tk := list[0]
	keys, _ := auth.NewCredentialsLike(got["password"], acct.Credentials)
	if tk.Number != testNumber || tk.Generation != acct.Generation || !reflect.DeepEqual(tk.Keys, keys) ||
		!tk.Expires.Equal(f.clock.Now().Add(auth.TicketTTL)) {
		t.Errorf("stored ticket %+v does not match its secret", tk)
	}
	if strings.Contains(a.body, "right-password") {
		t.Error("the password is in the answer")
	}

	// A new password ends the session, and with it the tickets.
	f.store.setPassword(t, testNumber, "newer-password")
	if a := b.ticketPost(token); a.code != 401 {
		t.Errorf("after a new password: %v", a)
	}
	f.store.fail = errors.New("db down")
	if a := b.ticketPost(token); a.code != 503 {
		t.Errorf("store down: %v", a)
	}
}

// textLink makes a one-tap link to n for the password whose credentials
// are c, as package sms does, and returns its path.
func (c *chatFixture) textLink(t *testing.T, n auth.Number, creds auth.Credentials, ttl time.Duration) string {
	t.Helper()
	u, err := sms.NewLoginLinks(testPublicURL, ttl, c.links).New(t.Context(), n, creds, c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(u, testPublicURL)
	if !ok {
		t.Fatalf("link %q is not under %s", u, testPublicURL)
	}
	return p
}

var linkForm = regexp.MustCompile(`<form method="post" action="(/l/[^"]+)" id="link-form">\s*<input type="hidden" name="csrf" value="([^"]+)">`)

// open follows a link as a browser with JavaScript does: GET, then the
// page posts its form. It returns the answer to the post (or to the GET,
// when that shows no form).
func (b *browser) open(path string) answer {
	b.t.Helper()
	a := b.get(path)
	m := linkForm.FindStringSubmatch(a.body)
	if m == nil {
		return a
	}
	if a.code != 200 {
		b.t.Fatalf("a form on a failure page: %v", a)
	}
	return b.post(html.UnescapeString(m[1]), url.Values{"csrf": {m[2]}})
}

// The one-tap link logs the browser in (a web session, on to /chat),
// once; then it fails with a page that offers a new password.
func TestLoginLink(t *testing.T) {
	f := newChatFixture(t, nil)
	f.store.setPassword(t, testNumber, "texted-password")
	acct, _ := f.store.Account(t.Context(), testNumber)
	path := f.textLink(t, testNumber, acct.Credentials, 24*time.Hour)

	// The page that posts itself: its one script is allowed by its hash.
	b := f.browser(t)
	a := b.get(path)
	if a.code != 200 {
		t.Fatal(a)
	}
	mustContain(t, "link page", a.body, "+82 10-1234-5678", `id="open-link"`)
	m := regexp.MustCompile(`<script>(.*?)</script>`).FindStringSubmatch(a.body)
	if m == nil || !strings.Contains(a.header.Get("Content-Security-Policy"), "script-src '"+scriptHash(html.UnescapeString(m[1]))+"'") {
		t.Fatalf("the page's script %q is not allowed by %q", m, a.header.Get("Content-Security-Policy"))
	}
	if l := f.links.links; len(l) != 1 {
		t.Fatalf("links %v", l)
	}
	for _, l := range f.links.links {
		if !l.Used.IsZero() {
			t.Fatal("GET spent the link (a link preview would)")
		}
	}
	// A post without the page's form token spends nothing.
	if a := f.browser(t).post(path, url.Values{}); a.code != 403 {
		t.Errorf("post without a token: %v", a)
	}

	a = b.open(path)
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/chat" {
		t.Fatalf("link: %v", a)
	}
	if _, ok := f.store.logins[testNumber]; !ok {
		t.Error("the link login was not recorded as a login")
	}
	if cfg := chatConfigOf(t, b.get("/chat").body); !cfg.Session || cfg.JID != string(testNumber)+"@"+testDomain {
		t.Errorf("chat after the link: %+v", cfg)
	}
	if a := b.get("/account"); a.code != 200 {
		t.Errorf("account after the link: %v", a)
	}

	// Used: a page that says so, with the number filled in for a new one.
	replay := f.browser(t).open(path)
	if replay.code != http.StatusGone {
		t.Fatalf("replay: %v", replay)
	}
	mustContain(t, "used link", replay.body, linkTexts[linkUsed][0], `action="/send-password#new-title"`, `value="+82 10-1234-5678"`, `id="get-password"`)
	// Posting it again directly (a replay of the post itself) fails too.
	c := f.browser(t)
	if a := c.post(path, url.Values{"csrf": {c.token("/")}}); a.code != http.StatusGone || !strings.Contains(a.body, linkTexts[linkUsed][0]) {
		t.Errorf("replayed post: %v", a)
	}
}

func TestLoginLinkFailures(t *testing.T) {
	f := newChatFixture(t, nil)
	f.store.setPassword(t, testNumber, "texted-password")
	acct, _ := f.store.Account(t.Context(), testNumber)
	expired := f.textLink(t, testNumber, acct.Credentials, time.Hour)
	superseded := f.textLink(t, testNumber, acct.Credentials, 24*time.Hour)
	// A link for this number that names another number's password.
	const other = auth.Number("+821099998888")
	f.store.setPassword(t, other, "other-password")
	otherAcct, _ := f.store.Account(t.Context(), other)
	foreign := f.textLink(t, testNumber, otherAcct.Credentials, 24*time.Hour)

	f.clock.Add(time.Hour)
	f.store.setPassword(t, testNumber, "newer-password")
	for _, tc := range []struct {
		name string
		path string
		code int
		why  linkFailure
	}{
		{"expired", expired, http.StatusGone, linkExpired},
		{"after a newer password", superseded, http.StatusGone, linkSuperseded},
		{"another number's password", foreign, http.StatusGone, linkSuperseded},
		{"unknown", "/l/AAAAAAAAAAAAAAAAAAAAAA", http.StatusNotFound, linkUnknown},
		{"too short", "/l/AAAAAAAAAAAAAAAAAAAAA", http.StatusNotFound, linkUnknown},
		{"too long", "/l/AAAAAAAAAAAAAAAAAAAAAAA", http.StatusNotFound, linkUnknown},
		{"not base64url", "/l/AAAAAAAAAAAAAAAAAAAA%2B%2F", http.StatusNotFound, linkUnknown},
		{"not canonical", "/l/AAAAAAAAAAAAAAAAAAAAAB", http.StatusNotFound, linkUnknown},
		{"huge", "/l/" + strings.Repeat("A", 5000), http.StatusNotFound, linkUnknown},
		{"quote", "/l/%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", http.StatusNotFound, linkUnknown},
	} {
		b := f.browser(t)
		a := b.open(tc.path)
		if a.code != tc.code {
			t.Errorf("%s: GET %v", tc.name, a)
			continue
		}
		mustContain(t, tc.name, a.body, linkTexts[tc.why][0], linkTexts[tc.why][1], `id="get-password"`)
		if strings.Contains(a.body, "<script") {
			t.Errorf("%s: the failure page has a script", tc.name)
		}
		// Posting it fails the same way, without logging in.
		if a := b.post(tc.path, url.Values{"csrf": {b.token("/")}}); a.code != tc.code || b.cookie(sessionCookie) != nil {
			t.Errorf("%s: POST %v", tc.name, a)
		}
	}
	if _, ok := f.store.logins[testNumber]; ok {
		t.Error("a failed link logged in")
	}

	// The new-password form of the failure page texts one.
	b := f.browser(t)
	a := b.get(superseded)
	tok := csrfField.FindStringSubmatch(a.body)[1]
	if a := b.post("/send-password", url.Values{"csrf": {tok}, "phone": {"+82 10-1234-5678"}}); a.code != 200 {
		t.Fatalf("new password from the failure page: %v", a)
	}
	if got := f.passwords.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "+82 10-1234-5678|") {
		t.Errorf("requests %q", got)
	}

	f.links.fail = errors.New("db down")
	if a := f.browser(t).get(superseded); a.code != 503 {
		t.Errorf("store down: %v", a)
	}
}

// A link for a requested (pending) password works, and makes it the
// account's password, as a login with it would (SPEC.md "HTTP"); the
// session is of the generation that follows.
func TestLoginLinkPendingPassword(t *testing.T) {
	f := newChatFixture(t, nil)
	f.store.setPassword(t, testNumber, "current-password")
	acct, _ := f.store.Account(t.Context(), testNumber)
	pending, _ := auth.NewCredentialsLike("pending-password", acct.Credentials)
	f.store.mu.Lock()
	acct.Pending = pending
	f.store.accounts[testNumber] = acct
	f.store.mu.Unlock()
	path := f.textLink(t, testNumber, pending, time.Hour)

	b := f.browser(t)
	if a := b.open(path); a.code != http.StatusSeeOther {
		t.Fatalf("link of a pending password: %v", a)
	}
	now, _ := f.store.Account(t.Context(), testNumber)
	if len(f.promoted) != 1 || now.MatchPassword("pending-password") != auth.CurrentPassword || now.Generation != acct.Generation+1 {
		t.Fatalf("not promoted: %v, generation %d", f.promoted, now.Generation)
	}
	if a := b.get("/account"); a.code != 200 {
		t.Errorf("the session is not of the new generation: %v", a)
	}

	// Replaced by a newer request before it was opened: void.
	f.store.mu.Lock()
	a := f.store.accounts[testNumber]
	p1, _ := auth.NewCredentialsLike("pending-one", a.Credentials)
	p2, _ := auth.NewCredentialsLike("pending-two", a.Credentials)
	a.Pending = p2
	f.store.accounts[testNumber] = a
	f.store.mu.Unlock()
	if a := f.browser(t).open(f.textLink(t, testNumber, p1, time.Hour)); a.code != http.StatusGone || !strings.Contains(a.body, linkTexts[linkSuperseded][0]) {
		t.Errorf("replaced pending password: %v", a)
	}
}

// Without the web client, a link logs in to the account page.
func TestLoginLinkWithoutChat(t *testing.T) {
	f := newChatFixture(t, func(o *Options) { o.WebClient = false })
	f.store.setPassword(t, testNumber, "texted-password")
	acct, _ := f.store.Account(t.Context(), testNumber)
	if a := f.browser(t).open(f.textLink(t, testNumber, acct.Credentials, time.Hour)); a.code != http.StatusSeeOther || a.header.Get("Location") != "/account" {
		t.Errorf("link without the web client: %v", a)
	}
}
