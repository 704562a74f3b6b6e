package web

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
)

// fakeStore is an in-memory account store.
type fakeStore struct {
	mu       sync.Mutex
	accounts map[auth.Number]auth.Account
	logins   map[auth.Number]time.Time
	fail     error // returned by every call when set
}

func newFakeStore() *fakeStore {
	return &fakeStore{accounts: map[auth.Number]auth.Account{}, logins: map[auth.Number]time.Time{}}
}

func (s *fakeStore) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return auth.Account{}, s.fail
	}
	a, ok := s.accounts[n]
	if !ok {
		return auth.Account{}, auth.ErrNotFound
	}
	return a, nil
}

func (s *fakeStore) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[n]
	if !ok {
		return auth.ErrNotFound
	}
	a.State, a.LastLogin = auth.StateActive, t
	s.accounts[n] = a
	s.logins[n] = t
	return nil
}

func (s *fakeStore) setCredentials(n auth.Number, c auth.Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[n]
	if !ok {
		a = auth.Account{Number: n, State: auth.StateUnclaimed, Created: time.Now()}
	}
	a.Credentials = c
	a.Generation++
	s.accounts[n] = a
}

// setPassword gives n the password p directly (as xmppctl would).
func (s *fakeStore) setPassword(t *testing.T, n auth.Number, p string) {
	t.Helper()
	c, err := auth.NewCredentials(p)
	if err != nil {
		t.Fatal(err)
	}
	s.setCredentials(n, c)
}

// fakePasswords stands in for sms.Passwords: it parses like the real one,
// stores fresh credentials and "texts" the password into a sink.
type fakePasswords struct {
	parser *auth.NumberParser
	store  *fakeStore

	mu    sync.Mutex
	sms   map[auth.Number]string // the last password texted to each number
	calls []string               // "phone|ip" of every Request
	err   error                  // returned instead of texting when set
}

func (p *fakePasswords) Request(ctx context.Context, phone, ip string) error {
	p.mu.Lock()
	p.calls = append(p.calls, phone+"|"+ip)
	injected := p.err
	p.mu.Unlock()
	if injected != nil {
		return injected
	}
	n, err := p.parser.Parse(phone)
	if err != nil {
		return err
	}
	pw, err := auth.GeneratePassword(12)
	if err != nil {
		return err
	}
	c, err := auth.NewCredentials(pw)
	if err != nil {
		return err
	}
	p.store.setCredentials(n, c)
	p.mu.Lock()
	p.sms[n] = pw
	p.mu.Unlock()
	return nil
}

// texted returns the last password sent to n.
func (p *fakePasswords) texted(t *testing.T, n auth.Number) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	pw, ok := p.sms[n]
	if !ok {
		t.Fatalf("no SMS to %s", n)
	}
	return pw
}

func (p *fakePasswords) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

type fakeOffline struct{ n int }

func (o fakeOffline) CountOffline(ctx context.Context, owner string) (int, error) {
	if o.n < 0 {
		return 0, errors.New("offline store down")
	}
	return o.n, nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a configured web handler on fakes.
type fixture struct {
	srv       *httptest.Server
	store     *fakeStore
	passwords *fakePasswords
	lockout   *auth.Lockout
	ipLockout *auth.Lockout
	clock     *fakeClock
	parser    *auth.NumberParser

	mu      sync.Mutex
	names   map[string]string // display names set
	kicked  []auth.Number     // accounts whose sessions ChangePassword closed
	nameErr error

	discovery *fakeDiscovery
}

// fakeDiscovery keeps the contact discovery opt-outs.
type fakeDiscovery struct {
	mu     sync.Mutex
	hidden map[auth.Number]bool
	sets   int
	err    error
}

func (d *fakeDiscovery) Hidden(_ context.Context, n auth.Number) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hidden[n], d.err
}

func (d *fakeDiscovery) SetHidden(_ context.Context, n auth.Number, hidden bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.sets++
	d.hidden[n] = hidden
	return nil
}

const (
	testDomain     = "chat.example"
	testNumber     = auth.Number("+821012345678")
	testNational   = "010-1234-5678"
	testSecret     = "0123456789abcdef0123456789abcdef"
	testFingerprt  = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
	testLockFailed = 3
	// testIPLockFailed is the per-IP limit: above the per-number one, so
	// that failures spread over numbers are what reaches it.
	testIPLockFailed = 5
)

func newFixture(t *testing.T, tlsServer bool) *fixture {
	t.Helper()
	return newFixtureWith(t, tlsServer, nil)
}

// newFixtureWith is newFixture with Options changed by edit before the
// handler is made.
func newFixtureWith(t *testing.T, tlsServer bool, edit func(*Options)) *fixture {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		store:     newFakeStore(),
		clock:     &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		parser:    parser,
		names:     map[string]string{},
		discovery: &fakeDiscovery{hidden: map[auth.Number]bool{}},
	}
	f.passwords = &fakePasswords{parser: parser, store: f.store, sms: map[auth.Number]string{}}
	f.lockout = auth.NewLockout(testLockFailed)
	f.lockout.Now = f.clock.Now
	f.ipLockout = auth.NewLockout(testIPLockFailed)
	f.ipLockout.Now = f.clock.Now
	opts := Options{
		Domain:    testDomain,
		Parser:    parser,
		Passwords: f.passwords,
		Accounts:  f.store,
		Lockout:   f.lockout,
		IPLockout: f.ipLockout,
		Offline:   fakeOffline{n: 3},
		SetFullName: func(ctx context.Context, owner, fn string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.nameErr != nil {
				return f.nameErr
			}
			f.names[owner] = fn
			return nil
		},
		ChangePassword: func(ctx context.Context, n auth.Number, c auth.Credentials) error {
			f.store.setCredentials(n, c)
			f.mu.Lock()
			f.kicked = append(f.kicked, n)
			f.mu.Unlock()
			return nil
		},
		SecretKey: []byte(testSecret),
		Client: ClientInfo{
			Host:        "xmpp.chat.example",
			Ports:       []ClientPort{{Port: 5222}, {Port: 5223, DirectTLS: true}},
			Fingerprint: testFingerprt,
		},
		Now:       f.clock.Now,
		Discovery: f.discovery,
	}
	if edit != nil {
		edit(&opts)
	}
	h := New(opts)
	if tlsServer {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.srv.Close)
	return f
}

// browser is an HTTP client with its own cookies that does not follow
// redirects, so that tests see each answer.
type browser struct {
	t      *testing.T
	f      *fixture
	client *http.Client
	// header is added to every request (X-Forwarded-For, as a proxy
	// would write it).
	header http.Header
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *f.srv.Client() // a copy: each browser has its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, f: f, client: &c, header: http.Header{}}
}

// browserFrom is a browser whose connections come from the loopback
// address local (127.0.0.2, ...), another client IP.
func (f *fixture) browserFrom(t *testing.T, local string) *browser {
	b := f.browser(t)
	b.client.Transport = transportFrom(t, f.srv, local)
	return b
}

// transportFrom is srv's client transport with connections from local.
func transportFrom(t *testing.T, srv *httptest.Server, local string) *http.Transport {
	t.Helper()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	tr.DialContext = d.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) answer {
	b.t.Helper()
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(body)}
}

func (b *browser) get(path string) answer {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.f.srv.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) answer {
	b.t.Helper()
	req, err := http.NewRequest("POST", b.f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token returns the form token of the page at path.
func (b *browser) token(path string) string {
	b.t.Helper()
	a := b.get(path)
	m := csrfField.FindStringSubmatch(a.body)
	if m == nil {
		b.t.Fatalf("GET %s: %d, no form token in %q", path, a.code, a.body)
	}
	return m[1]
}

// login logs in from the home page and expects success.
func (b *browser) login(phone, password string) {
	b.t.Helper()
	a := b.post("/login", url.Values{"csrf": {b.token("/")}, "phone": {phone}, "password": {password}})
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/account" {
		b.t.Fatalf("login: %d %s %q", a.code, a.header.Get("Location"), a.body)
	}
}

// cookie returns the browser's cookie name for the test server.
func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.f.srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.f.srv.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// mustContain looks for wants in the text of body, as a browser reads it
// (html/template writes "+" as "&#43;"; <wbr> marks where a line may break).
func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	body = html.UnescapeString(strings.ReplaceAll(body, "<wbr>", ""))
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q in\n%s", what, w, body)
		}
	}
}

func (a answer) String() string { return fmt.Sprintf("%d %q", a.code, a.body) }
