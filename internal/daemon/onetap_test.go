package daemon_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"mellium.im/sasl"

	"dialtone/internal/xmpptest"
)

// TestOneTapLogin runs SPEC.md "Web client and one-tap login" through the
// real daemon on each store: the link in the first notice to a new number
// logs a browser in, the browser's web session gets a ticket, and the
// ticket logs in over the WebSocket once; links fail once used or once a
// newer password replaced theirs, and a link of a requested password
// makes it the account's.
func TestOneTapLogin(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_SMS_GATEWAY":           "webhook",
				"XMPPD_SMS_WEBHOOK_URL":       rcv.URL,
				"XMPPD_PASSWORD_SMS_INTERVAL": "0s",
			}))
			alice := s.newUser(t)
			a := s.login(t, alice, "x")
			bob := s.newNumber()
			send(t, a, bob+"@"+domain, "are you there?")
			notice := rcv.Wait(t, bob, 1, noticeTimeout)
			m := regexp.MustCompile(`password ([A-Za-z0-9]+), or tap http://localhost:\d+(/l/[A-Za-z0-9_-]{22})$`).FindStringSubmatch(notice.Text)
			if m == nil {
				t.Fatalf("first notice %q has no link", notice.Text)
			}
			noticePassword, link := m[1], m[2]

			browser := clientFrom(t, "127.0.0.1")
			if got := s.openLink(t, browser, link); got.code != http.StatusSeeOther || got.header.Get("Location") != "/chat" {
				t.Fatalf("opening the link: %d %q", got.code, got.body)
			}
			ticket := s.ticket(t, browser)
			if ticket["jid"] != bob+"@"+domain {
				t.Fatalf("ticket for %q", ticket["jid"])
			}
			if cond := s.wsAuth(t, bob, ticket["password"]); cond != "" {
				t.Fatalf("ticket login over the WebSocket: %s", cond)
			}
			if cond := s.wsAuth(t, bob, ticket["password"]); cond != "not-authorized" {
				t.Fatalf("ticket replayed: %q, want not-authorized", cond)
			}
			if cond := s.wsAuth(t, bob, s.ticket(t, browser)["password"]); cond != "" {
				t.Fatalf("a second ticket: %s", cond)
			}
			if got := s.openLink(t, clientFrom(t, "127.0.0.1"), link); got.code != http.StatusGone || !strings.Contains(got.body, "used already") {
				t.Fatalf("the link opened again: %d %.300q", got.code, got.body)
			}

			// Two password requests: the first one's link is superseded by
			// the second, which logs in and makes its password the one.
			for range 2 {
				if got := s.fetch(t, "127.0.0.1", "POST", "/api/v1/password", []string{"Content-Type: application/json"}, `{"phone":"`+bob+`"}`); got.code != http.StatusAccepted {
					t.Fatalf("password request: %d %q", got.code, got.body)
				}
			}
			re := regexp.MustCompile(`^Your ` + domain + ` password is ([A-Za-z0-9]+)\. Log in with your phone number, or tap http://localhost:\d+(/l/[A-Za-z0-9_-]{22})$`)
			first := re.FindStringSubmatch(rcv.Wait(t, bob, 2, noticeTimeout).Text)
			second := re.FindStringSubmatch(rcv.Wait(t, bob, 3, noticeTimeout).Text)
			if first == nil || second == nil {
				t.Fatalf("password SMS: %+v", rcv.To(bob))
			}
			if got := s.openLink(t, clientFrom(t, "127.0.0.1"), first[2]); got.code != http.StatusGone || !strings.Contains(got.body, "out of date") {
				t.Fatalf("a superseded link: %d %.300q", got.code, got.body)
			}
			if cond := s.xmppAuth(t, "127.0.0.1", bob, noticePassword); cond != "" {
				t.Fatalf("the current password before the pending one is used: %q", cond)
			}
			if got := s.openLink(t, clientFrom(t, "127.0.0.1"), second[2]); got.code != http.StatusSeeOther {
				t.Fatalf("the pending password's link: %d %.300q", got.code, got.body)
			}
			if cond := s.xmppAuth(t, "127.0.0.1", bob, noticePassword); cond != "not-authorized" {
				t.Errorf("the older password after the link made the newer current: %q", cond)
			}
			if cond := s.xmppAuth(t, "127.0.0.1", bob, second[1]); cond != "" {
				t.Errorf("the newer password: %q", cond)
			}
		})
	}
}

var linkFormRE = regexp.MustCompile(`action="(/l/[^"]+)" id="link-form">\s*<input type="hidden" name="csrf" value="([^"]+)">`)

// openLink opens a one-tap link as a browser with JavaScript does (GET,
// then the page posts itself) and returns the last answer.
func (s *daemonUnderTest) openLink(t *testing.T, c *http.Client, path string) answer {
	t.Helper()
	base := "http://" + s.d.Addr("http")
	page := do(t, c, "GET", base+path, nil, "")
	m := linkFormRE.FindStringSubmatch(page.body)
	if m == nil {
		return page
	}
	form := url.Values{"csrf": {html.UnescapeString(m[2])}}
	return do(t, c, "POST", base+html.UnescapeString(m[1]), []string{"Content-Type: application/x-www-form-urlencoded"}, form.Encode())
}

var chatSettings = regexp.MustCompile(`(?s)id="dialtone-config">(.*?)</script>`)

// ticket asks for a web client ticket as /chat's script does.
func (s *daemonUnderTest) ticket(t *testing.T, c *http.Client) map[string]string {
	t.Helper()
	base := "http://" + s.d.Addr("http")
	page := do(t, c, "GET", base+"/chat", nil, "")
	m := chatSettings.FindStringSubmatch(page.body)
	var cfg struct{ CSRF string }
	if m == nil || json.Unmarshal([]byte(m[1]), &cfg) != nil || cfg.CSRF == "" {
		t.Fatalf("/chat: %d, settings %q", page.code, m)
	}
	got := do(t, c, "POST", base+"/chat/credentials", []string{"X-CSRF-Token: " + cfg.CSRF}, "")
	var ticket map[string]string
	if got.code != 200 || json.Unmarshal([]byte(got.body), &ticket) != nil {
		t.Fatalf("/chat/credentials: %d %q", got.code, got.body)
	}
	return ticket
}

// saslReply is a SASL answer of the server: challenge, success or failure.
type saslReply struct {
	XMLName   xml.Name
	Text      string                       `xml:",chardata"`
	Condition []struct{ XMLName xml.Name } `xml:",any"`
}

// wsAuth logs num in with SCRAM-SHA-256 over the WebSocket, as the web
// client does, and returns "" or the failure condition.
func (s *daemonUnderTest) wsAuth(t *testing.T, num, password string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.d.Addr("http")+"/xmpp-websocket", &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	write := func(s string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []byte {
		t.Helper()
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="` + domain + `" version="1.0"/>`)
	read() // <open/>
	read() // features
	client := sasl.NewClient(sasl.ScramSha256, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(num), []byte(password), nil
	}))
	_, resp, err := client.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	write(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="SCRAM-SHA-256">` + base64.StdEncoding.EncodeToString(resp) + `</auth>`)
	for range 3 {
		var r saslReply
		if err := xml.Unmarshal(read(), &r); err != nil {
			t.Fatal(err)
		}
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Text))
		switch r.XMLName.Local {
		case "failure":
			if len(r.Condition) == 0 {
				return "failure"
			}
			return r.Condition[0].XMLName.Local
		case "success":
			if _, _, err := client.Step(data); err != nil {
				t.Fatalf("the server's signature: %v", err)
			}
			return ""
		case "challenge":
			if _, resp, err = client.Step(data); err != nil {
				t.Fatal(err)
			}
			write(`<response xmlns="urn:ietf:params:xml:ns:xmpp-sasl">` + base64.StdEncoding.EncodeToString(resp) + `</response>`)
		}
	}
	t.Fatal("no end to the SASL exchange")
	return ""
}

// TestOneTapLinkBehindProxy: behind a TLS-terminating proxy the links are
// under XMPPD_PUBLIC_URL, and /chat, reached over https through the
// proxy, connects to its wss:// WebSocket and nothing else.
func TestOneTapLinkBehindProxy(t *testing.T) {
	rcv := newSMSReceiver(t)
	const public = "https://chat.example.test"
	s := startDaemon(t, noticeEnv(t, "", map[string]string{
		"XMPPD_SMS_GATEWAY":     "webhook",
		"XMPPD_SMS_WEBHOOK_URL": rcv.URL,
		"XMPPD_PUBLIC_URL":      public,
		"XMPPD_TRUSTED_PROXIES": proxyIP + "/32",
	}))
	n := s.newNumber()
	if got := s.fetch(t, proxyIP, "POST", "/api/v1/password", []string{"Content-Type: application/json", "X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https"}, `{"phone":"`+n+`"}`); got.code != http.StatusAccepted {
		t.Fatalf("password request: %d %q", got.code, got.body)
	}
	text := rcv.Wait(t, n, 1, noticeTimeout).Text
	m := regexp.MustCompile(`, or tap ` + regexp.QuoteMeta(public) + `(/l/[A-Za-z0-9_-]{22})$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("password SMS %q: no link under %s", text, public)
	}
	c := clientFrom(t, proxyIP)
	proxied := []string{"X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https"}
	page := do(t, c, "GET", "http://"+s.d.Addr("http")+m[1], proxied, "")
	f := linkFormRE.FindStringSubmatch(page.body)
	if f == nil {
		t.Fatalf("link page: %d %.300q", page.code, page.body)
	}
	got := do(t, c, "POST", "http://"+s.d.Addr("http")+html.UnescapeString(f[1]),
		append([]string{"Content-Type: application/x-www-form-urlencoded"}, proxied...), url.Values{"csrf": {html.UnescapeString(f[2])}}.Encode())
	if got.code != http.StatusSeeOther || got.header.Get("Location") != "/chat" {
		t.Fatalf("link: %d %.300q", got.code, got.body)
	}
	cookies := (&http.Response{Header: got.header}).Cookies()
	if len(cookies) == 0 || !cookies[0].Secure {
		t.Errorf("the session cookie over https is not Secure: %v", cookies)
	}
	chat := do(t, c, "GET", "http://"+s.d.Addr("http")+"/chat", proxied, "")
	if csp := chat.header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' wss://chat.example.test/xmpp-websocket;") {
		t.Errorf("/chat CSP %q", csp)
	}
	if !strings.Contains(chat.body, `"websocketURL":"wss://chat.example.test/xmpp-websocket"`) {
		t.Errorf("/chat settings: %.2000s", chat.body)
	}
}
