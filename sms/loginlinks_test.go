package sms

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
)

// memLinks is an in-memory LoginLinkStore.
type memLinks struct {
	mu    sync.Mutex
	links []auth.LoginLink
	fail  error
}

func (s *memLinks) CreateLoginLink(_ context.Context, l auth.LoginLink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.links = append(s.links, l)
	return nil
}

// find returns the stored link of the URL url.
func (s *memLinks) find(t *testing.T, url string) auth.LoginLink {
	t.Helper()
	i := strings.LastIndex(url, LoginLinkPath)
	hash, ok := auth.LinkTokenHash(url[i+len(LoginLinkPath):])
	if i < 0 || !ok {
		t.Fatalf("%q is no link", url)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		if l.Hash == hash {
			return l
		}
	}
	t.Fatalf("no link stored for %q", url)
	return auth.LoginLink{}
}

const testBaseURL = "https://chat.example"

func TestPasswordLinkText(t *testing.T) {
	if got, want := PasswordLinkText("chat.example", "Abc234567890", ""), PasswordText("chat.example", "Abc234567890"); got != want {
		t.Errorf("without a link: %q, want %q", got, want)
	}
	got := PasswordLinkText("chat.example", "Abc234567890", "https://chat.example/l/AAAAAAAAAAAAAAAAAAAAAA")
	want := "Your chat.example password is Abc234567890. Log in with your phone number, or tap https://chat.example/l/AAAAAAAAAAAAAAAAAAAAAA"
	if got != want {
		t.Errorf("with a link:\n got %q\nwant %q", got, want)
	}
	if n, ucs2 := Segments(got); n != 1 || ucs2 {
		t.Errorf("%d segments (UCS-2 %v), want one GSM-7 segment", n, ucs2)
	}
}

// The first notice with a link: SPEC's text, the link counted in the two
// segments, so that a long preview is cut earlier.
func TestNoticeTextWithLink(t *testing.T) {
	const link = "https://chat.example.com/l/AAAAAAAAAAAAAAAAAAAAAA"
	const head = `New message from +821012345678 on example.com: "`
	const linkTail = `". Log in with your phone number and password abcDEF23456, or tap ` + link
	a := func(n int) string { return strings.Repeat("a", n) }
	n := Notice{Domain: "example.com", Sender: "+821012345678", Body: "Hi there", Preview: true, Password: "abcDEF23456", Link: link}
	if got, want := NoticeText(n), head+"Hi there"+linkTail; got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	// 48 + 115 = 163 septets besides the preview: 143 fit in 306.
	n.Body = a(143)
	if got, want := NoticeText(n), head+a(143)+linkTail; got != want {
		t.Errorf("306 septets:\n got %q\nwant %q", got, want)
	}
	n.Body = a(144)
	if got, want := NoticeText(n), head+a(140)+"..."+linkTail; got != want {
		t.Errorf("307 septets, cut:\n got %q\nwant %q", got, want)
	}
	n.Preview = false
	if got, want := NoticeText(n), "New message from +821012345678 on example.com. Log in with your phone number and password abcDEF23456, or tap "+link; got != want {
		t.Errorf("previews off:\n got %q\nwant %q", got, want)
	}
	// A link without a password is no login: it is left out.
	n = Notice{Domain: "example.com", Sender: "+821012345678", Body: "Hi", Preview: true, LoginHint: true, Link: link}
	if got := NoticeText(n); strings.Contains(got, "tap") {
		t.Errorf("a link without a password: %q", got)
	}
}

var linkPasswordText = regexp.MustCompile(`^Your chat\.example password is ([A-Za-z0-9]{12})\. Log in with your phone number, or tap (https://chat\.example/l/[A-Za-z0-9_-]{22})$`)

// linkOf returns the password and link texted in m.
func linkOf(t *testing.T, m Pending) (password, url string) {
	t.Helper()
	plain, err := Open(testKey, m.Body)
	if err != nil {
		t.Fatal(err)
	}
	sub := linkPasswordText.FindStringSubmatch(string(plain))
	if sub == nil {
		t.Fatalf("SMS text %q", plain)
	}
	return sub[1], sub[2]
}

// Each password SMS carries a fresh link, stored hashed for TTL and for
// the password it came with: the new account's current one, then the
// pending ones of later requests.
func TestRequestTextsALink(t *testing.T) {
	e := newPasswordEnv(t)
	links := &memLinks{}
	e.p.Links = &LoginLinks{BaseURL: testBaseURL, TTL: 24 * time.Hour, Store: links}
	ctx := context.Background()
	const n = auth.Number("+821012345678")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.p.Request(ctx, "010-1234-5678", "192.0.2.1"))
	pw1, url1 := linkOf(t, e.store.sent()[0])
	l1 := links.find(t, url1)
	a, _ := e.store.Account(ctx, n)
	if l1.Number != n || !l1.Created.Equal(t0) || !l1.Expires.Equal(t0.Add(24*time.Hour)) || !l1.Used.IsZero() {
		t.Fatalf("stored link %+v", l1)
	}
	if a.MatchPassword(pw1) != auth.CurrentPassword || a.LinkPassword(l1.PasswordTag) != auth.CurrentPassword {
		t.Fatalf("the link is not for the texted password")
	}
	if strings.Contains(l1.Hash, url1[len(url1)-auth.LinkTokenLength:]) {
		t.Fatal("the token is stored as it is")
	}

	e.clock.add(2 * time.Minute)
	must(e.p.Request(ctx, "010-1234-5678", "192.0.2.1"))
	pw2, url2 := linkOf(t, e.store.sent()[1])
	l2 := links.find(t, url2)
	a, _ = e.store.Account(ctx, n)
	if url2 == url1 || a.MatchPassword(pw2) != auth.PendingPassword || a.LinkPassword(l2.PasswordTag) != auth.PendingPassword ||
		a.LinkPassword(l1.PasswordTag) != auth.CurrentPassword {
		t.Fatalf("second link: %+v", l2)
	}

	// xmppctl's Issue: a link too, and the earlier ones are superseded.
	pw3, err := e.p.Issue(ctx, n)
	must(err)
	got3, url3 := linkOf(t, e.store.sent()[2])
	a, _ = e.store.Account(ctx, n)
	if got3 != pw3 || a.LinkPassword(links.find(t, url3).PasswordTag) != auth.CurrentPassword ||
		a.LinkPassword(l1.PasswordTag) != auth.NoMatch || a.LinkPassword(l2.PasswordTag) != auth.NoMatch {
		t.Fatal("after Issue, the older links still name a password of the account")
	}

	// The store failing: no SMS without its link.
	links.fail = errors.New("db down")
	e.clock.add(2 * time.Minute)
	if err := e.p.Request(ctx, "010-1234-5678", "192.0.2.1"); err == nil {
		t.Fatal("a password SMS went out without its link")
	}
	if len(e.store.sent()) != 3 {
		t.Fatalf("%d SMS queued", len(e.store.sent()))
	}
}

// XMPPD_LOGIN_LINK_TTL=0 keeps today's text and stores nothing.
func TestRequestWithoutLinks(t *testing.T) {
	links := &memLinks{}
	for _, l := range []*LoginLinks{nil, {BaseURL: testBaseURL, TTL: 0, Store: links}} {
		e := newPasswordEnv(t)
		e.p.Links = l
		if err := e.p.Request(context.Background(), "010-1234-5678", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		textedPassword(t, e.store.sent()[0]) // the text without a link
	}
	if len(links.links) != 0 {
		t.Fatalf("links stored: %+v", links.links)
	}
}

// The first notice to a new number carries a link for the password it
// texts; a call to a landline, and a notice without a password, do not.
func TestNoticeTextsALink(t *testing.T) {
	e := newNoticeEnv(t)
	links := &memLinks{}
	e.n.Links = &LoginLinks{BaseURL: "https://example.org", TTL: time.Hour, Store: links}
	e.send(t, alice, bob, "hi")
	got := e.store.texts(t, string(bob))
	re := regexp.MustCompile(`^New message from \+821011110000 on example\.org: "hi"\. Log in with your phone number and password ([A-Za-z0-9]{12}), or tap (https://example\.org/l/[A-Za-z0-9_-]{22})$`)
	m := re.FindStringSubmatch(got[0])
	if len(got) != 1 || m == nil {
		t.Fatalf("first notice %q", got)
	}
	l := links.find(t, m[2])
	a := auth.Account{Credentials: e.store.creds[bob]}
	if l.Number != bob || a.MatchPassword(m[1]) != auth.CurrentPassword || a.LinkPassword(l.PasswordTag) != auth.CurrentPassword ||
		!l.Expires.Equal(e.clock.now().Add(time.Hour)) {
		t.Fatalf("stored link %+v is not for the texted password", l)
	}

	// An unclaimed account whose password was handed out: no password, no link.
	const carol = auth.Number("+821033330000")
	e.store.accounts[carol] = &Receiver{Exists: true, PasswordDelivered: true}
	e.send(t, alice, carol, "hi")
	if got := e.store.texts(t, string(carol)); len(got) != 1 || strings.Contains(got[0], "tap") {
		t.Fatalf("notice without a password: %q", got)
	}

	const landline = auth.Number("+82231234567")
	e.n.Voice = true
	e.send(t, alice, landline, "ring")
	if got := e.store.texts(t, string(landline)); len(got) != 1 || strings.Contains(got[0], "tap") || !strings.Contains(got[0], "password") {
		t.Fatalf("call to a landline: %q", got)
	}
	if len(links.links) != 1 {
		t.Fatalf("%d links stored, want 1", len(links.links))
	}
}
