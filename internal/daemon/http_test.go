package daemon_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"mellium.im/sasl"

	"dialtone/internal/xmpptest"
)

// The daemon's HTTP side behind a reverse proxy, over real sockets. The
// proxy is 127.0.0.1 (XMPPD_TRUSTED_PROXIES); other clients come from
// other loopback addresses, each its own client IP.
const (
	proxyIP    = "127.0.0.1"
	metricsIP  = "127.0.0.2" // XMPPD_METRICS_ALLOW
	strangerIP = "127.0.0.3" // neither: its forwarding headers are lies
	publicURL  = "http://chat.example.test:5280"
)

func TestHTTPBehindProxy(t *testing.T) {
	// The configuration of the notice tests (embedded store, loopback
	// listeners) with a proxy in front.
	s := startDaemon(t, noticeEnv(t, "", map[string]string{
		"XMPPD_PUBLIC_URL":                    publicURL,
		"XMPPD_TRUSTED_PROXIES":               proxyIP + "/32",
		"XMPPD_METRICS_ALLOW":                 metricsIP + "/32",
		"XMPPD_LOGIN_FAILURES":                "1", // an address locks after 10
		"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR": "2",
	}))
	t.Run("healthz", func(t *testing.T) {
		if a := s.fetch(t, strangerIP, "GET", "/healthz", nil, ""); a.code != 200 || a.body != "ok" {
			t.Errorf("%d %q", a.code, a.body)
		}
	})
	t.Run("host_meta", func(t *testing.T) { testHostMetaBehindProxy(t, s) })
	t.Run("metrics", func(t *testing.T) { testMetricsAllow(t, s) })
	t.Run("cookies", func(t *testing.T) { testSecureCookieBehindProxy(t, s) })
	t.Run("password_requests_per_ip", func(t *testing.T) { testPasswordRequestsPerIP(t, s) })
	t.Run("xmpp_failures_lock_web", func(t *testing.T) { testXMPPFailuresLockWeb(t, s) })
	t.Run("web_failures_lock_xmpp", func(t *testing.T) { testWebFailuresLockXMPP(t, s) })
	t.Run("websocket", func(t *testing.T) { testWebSocketBehindProxy(t, s) })
}

// answer is one HTTP answer.
type answer struct {
	code   int
	header http.Header
	body   string
}

// clientFrom is an HTTP client whose connections come from the loopback
// address local, with its own cookies, that does not follow redirects.
func clientFrom(t *testing.T, local string) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: xmpptest.Timeout}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Jar:           jar,
		Timeout:       xmpptest.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends one request with c; header is "Name: value" lines.
func do(t *testing.T, c *http.Client, method, u string, header []string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// fetch sends one request from the loopback address local.
func (s *daemonUnderTest) fetch(t *testing.T, local, method, path string, header []string, body string) answer {
	t.Helper()
	return do(t, clientFrom(t, local), method, "http://"+s.d.Addr("http")+path, header, body)
}

func testHostMetaBehindProxy(t *testing.T, s *daemonUnderTest) {
	for _, tc := range []struct {
		from   string
		header []string
		want   string
	}{
		{strangerIP, nil, "ws://chat.example.test:5280/xmpp-websocket"},
		{strangerIP, []string{"X-Forwarded-Proto: https"}, "ws://chat.example.test:5280/xmpp-websocket"},
		{proxyIP, []string{"X-Forwarded-Proto: https"}, "wss://chat.example.test:5280/xmpp-websocket"},
		{proxyIP, []string{"X-Forwarded-Proto: http"}, "ws://chat.example.test:5280/xmpp-websocket"},
	} {
		for _, path := range []string{"/.well-known/host-meta", "/.well-known/host-meta.json"} {
			// A forged Host (and X-Forwarded-Host) must not reach the
			// answer, which caches keep for everyone.
			header := append([]string{"Host: evil.example", "X-Forwarded-Host: evil.example"}, tc.header...)
			a := s.fetch(t, tc.from, "GET", path, header, "")
			if a.code != 200 || strings.Contains(a.body, "evil") || !strings.Contains(a.body, `"`+tc.want+`"`) {
				t.Errorf("%s from %s %v: %d %q, want a link to %s", path, tc.from, tc.header, a.code, a.body, tc.want)
			}
		}
	}
}

func testMetricsAllow(t *testing.T, s *daemonUnderTest) {
	for _, tc := range []struct {
		from string
		xff  string
		want int
	}{
		{metricsIP, "", 200},
		{proxyIP, "", 404}, // the proxy itself: loopback, but not listed
		{strangerIP, "", 404},
		{strangerIP, metricsIP, 404},                      // spoofed by a peer that is not a trusted proxy
		{proxyIP, metricsIP, 200},                         // forwarded by the trusted proxy
		{proxyIP, "198.51.100.1", 404},                    // a stranger behind the proxy is not local
		{proxyIP, metricsIP + ", " + "198.51.100.1", 404}, // the rightmost untrusted hop counts
	} {
		var header []string
		if tc.xff != "" {
			header = []string{"X-Forwarded-For: " + tc.xff}
		}
		a := s.fetch(t, tc.from, "GET", "/metrics", header, "")
		if a.code != tc.want {
			t.Errorf("from %s, X-Forwarded-For %q: %d, want %d", tc.from, tc.xff, a.code, tc.want)
		}
		if a.code == 200 && !strings.Contains(a.body, "xmppd_") {
			t.Errorf("metrics body %.200q", a.body)
		}
	}
}

func testSecureCookieBehindProxy(t *testing.T, s *daemonUnderTest) {
	for _, tc := range []struct {
		from   string
		header []string
		secure bool
	}{
		{proxyIP, []string{"X-Forwarded-Proto: https"}, true},
		{proxyIP, nil, false},
		{strangerIP, []string{"X-Forwarded-Proto: https"}, false},
	} {
		a := s.fetch(t, tc.from, "GET", "/", tc.header, "")
		cookies := (&http.Response{Header: a.header}).Cookies()
		if a.code != 200 || len(cookies) == 0 {
			t.Fatalf("home page from %s: %d, cookies %v", tc.from, a.code, cookies)
		}
		for _, c := range cookies {
			if c.Secure != tc.secure {
				t.Errorf("from %s %v: cookie %s Secure %v, want %v", tc.from, tc.header, c.Name, c.Secure, tc.secure)
			}
		}
	}
}

// testPasswordRequestsPerIP: the per-IP limit (2 here) counts the client
// behind the proxy, and a stranger's X-Forwarded-For changes nothing.
func testPasswordRequestsPerIP(t *testing.T, s *daemonUnderTest) {
	request := func(from, xff string) int {
		t.Helper()
		header := []string{"Content-Type: application/json"}
		if xff != "" {
			header = append(header, "X-Forwarded-For: "+xff)
		}
		return s.fetch(t, from, "POST", "/api/v1/password", header, `{"phone":"`+s.newNumber()+`"}`).code
	}
	for i, want := range []int{202, 202, 429} {
		if got := request(proxyIP, "198.51.100.1"); got != want {
			t.Errorf("request %d for 198.51.100.1 through the proxy: %d, want %d", i+1, got, want)
		}
	}
	if got := request(proxyIP, "198.51.100.2"); got != 202 {
		t.Errorf("another client behind the proxy: %d, want 202", got)
	}
	for i, want := range []int{202, 202, 429} {
		if got := request(strangerIP, fmt.Sprintf("198.51.100.%d", 10+i)); got != want {
			t.Errorf("request %d from %s with a new X-Forwarded-For each time: %d, want %d", i+1, strangerIP, got, want)
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// webLogin logs in on the home page from the loopback address local.
func (s *daemonUnderTest) webLogin(t *testing.T, local, phone, password string) answer {
	t.Helper()
	c := clientFrom(t, local)
	base := "http://" + s.d.Addr("http")
	home := do(t, c, "GET", base+"/", nil, "")
	m := csrfField.FindStringSubmatch(home.body)
	if m == nil {
		t.Fatalf("home page: %d, no form token", home.code)
	}
	form := url.Values{"csrf": {m[1]}, "phone": {phone}, "password": {password}}
	return do(t, c, "POST", base+"/login", []string{"Content-Type: application/x-www-form-urlencoded"}, form.Encode())
}

// xmppAuth runs one SASL SCRAM-SHA-256 exchange from the loopback address
// local and returns its outcome ("" or the failure condition).
func (s *daemonUnderTest) xmppAuth(t *testing.T, local, num, pass string) string {
	t.Helper()
	c := xmpptest.DialFrom(t, local, s.c2s())
	defer c.Conn.Close()
	c.Open(domain)
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	return c.Auth(sasl.ScramSha256, num, pass)
}

// ipLockAfter is ten times XMPPD_LOGIN_FAILURES.
const ipLockAfter = 10

// testXMPPFailuresLockWeb: failed XMPP logins from an address, one per
// number, lock the web login from that address too.
func testXMPPFailuresLockWeb(t *testing.T, s *daemonUnderTest) {
	const from = "127.0.0.4"
	u := s.newUser(t)
	for i := range ipLockAfter {
		if cond := s.xmppAuth(t, from, s.newNumber(), "wrong-password"); cond != "not-authorized" {
			t.Fatalf("XMPP failure %d: %q", i+1, cond)
		}
	}
	if cond := s.xmppAuth(t, from, u.num, u.pass); cond != "temporary-auth-failure" {
		t.Fatalf("XMPP after %d failures: %q, want temporary-auth-failure", ipLockAfter, cond)
	}
	a := s.webLogin(t, from, u.num, u.pass)
	if a.code != http.StatusTooManyRequests || !strings.Contains(a.body, "from your address") {
		t.Errorf("web login from the locked address: %d %.300q", a.code, a.body)
	}
	if a := s.webLogin(t, "127.0.0.5", u.num, u.pass); a.code != http.StatusSeeOther || a.header.Get("Location") != "/account" {
		t.Errorf("web login from another address: %d %.300q", a.code, a.body)
	}
}

// testWebFailuresLockXMPP: failed web logins from an address lock XMPP
// logins from it.
func testWebFailuresLockXMPP(t *testing.T, s *daemonUnderTest) {
	const from = "127.0.0.6"
	u := s.newUser(t)
	for i := range ipLockAfter {
		if a := s.webLogin(t, from, s.newNumber(), "wrong-password"); a.code != http.StatusUnauthorized {
			t.Fatalf("web failure %d: %d", i+1, a.code)
		}
	}
	if cond := s.xmppAuth(t, from, u.num, u.pass); cond != "temporary-auth-failure" {
		t.Errorf("XMPP login after %d web failures: %q, want temporary-auth-failure", ipLockAfter, cond)
	}
	if cond := s.xmppAuth(t, "127.0.0.7", u.num, u.pass); cond != "" {
		t.Errorf("XMPP login from another address: %q", cond)
	}
}

// testWebSocketBehindProxy: a WebSocket that reached the proxy over https
// is secure (PLAIN is offered), and its client IP is the forwarded one.
func testWebSocketBehindProxy(t *testing.T, s *daemonUnderTest) {
	u := s.newUser(t)
	const client = "198.51.100.77"
	features := func(from, proto string) (*websocket.Conn, context.Context, string) {
		ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
		t.Cleanup(cancel)
		h := http.Header{"X-Forwarded-For": {client}}
		if proto != "" {
			h.Set("X-Forwarded-Proto", proto)
		}
		ws, _, err := websocket.Dial(ctx, "ws://"+s.d.Addr("http")+"/xmpp-websocket", &websocket.DialOptions{
			Subprotocols: []string{"xmpp"}, HTTPClient: clientFrom(t, from), HTTPHeader: h,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		if err := ws.Write(ctx, websocket.MessageText, []byte(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="`+domain+`" version="1.0"/>`)); err != nil {
			t.Fatal(err)
		}
		var f string
		for range 2 { // <open/>, then the features
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f = string(b)
		}
		return ws, ctx, f
	}
	if _, _, f := features(strangerIP, "https"); strings.Contains(f, ">PLAIN<") || !strings.Contains(f, "SCRAM-SHA-256") {
		t.Errorf("https claimed by a stranger: %s", f)
	}
	if _, _, f := features(proxyIP, "http"); strings.Contains(f, ">PLAIN<") {
		t.Errorf("http through the proxy: %s", f)
	}
	ws, ctx, f := features(proxyIP, "https")
	if !strings.Contains(f, ">PLAIN<") {
		t.Fatalf("https through the proxy: %s", f)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + u.num + "\x00" + u.pass))
	if err := ws.Write(ctx, websocket.MessageText, []byte(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">`+plain+`</auth>`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || !strings.HasPrefix(string(b), "<success") {
		t.Fatalf("PLAIN: %q %v", b, err)
	}
	// The login is logged (before <success/> is sent) with the client's
	// address, the one its per-IP limits count.
	if !loggedLogin(s.log.String(), u.num, client) {
		t.Errorf("no login of %s from %s in the log", u.num, client)
	}
}

// loggedLogin reports whether log has the login line of num from ip.
func loggedLogin(log, num, ip string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		var l struct{ Msg, JID, IP string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "login" && strings.HasPrefix(l.JID, num+"@") && l.IP == ip {
			return true
		}
	}
	return false
}
