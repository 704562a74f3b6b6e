package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func prefixes(list ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestMetricsAllowList: /metrics answers only clients in MetricsAllow,
// by their client IP: a proxy on loopback does not make everyone behind
// it local, and an untrusted peer cannot claim an allowed address.
func TestMetricsAllowList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   []netip.Prefix
		trusted []netip.Prefix
		from    string
		xff     string
		want    int
	}{
		{name: "allowed address", allow: prefixes("127.0.0.2/32"), from: "127.0.0.2", want: 200},
		{name: "other address", allow: prefixes("127.0.0.2/32"), from: "127.0.0.1", want: 404},
		{name: "nobody allowed", from: "127.0.0.1", want: 404},
		{name: "spoofed XFF from an untrusted peer", allow: prefixes("127.0.0.2/32"), from: "127.0.0.3", xff: "127.0.0.2", want: 404},
		{name: "allowed client through a trusted proxy", allow: prefixes("127.0.0.2/32"), trusted: prefixes("127.0.0.1/32"), from: "127.0.0.1", xff: "127.0.0.2", want: 200},
		{name: "outside client through a trusted proxy", allow: prefixes("127.0.0.0/8"), trusted: prefixes("127.0.0.1/32"), from: "127.0.0.1", xff: "198.51.100.1", want: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, false, func(o *Options) {
				o.Gatherer = prometheus.NewRegistry()
				o.MetricsAllow, o.TrustedProxies = tc.allow, tc.trusted
			})
			b := f.browserFrom(t, tc.from)
			if tc.xff != "" {
				b.header.Set("X-Forwarded-For", tc.xff)
			}
			if a := b.get("/metrics"); a.code != tc.want {
				t.Errorf("%v, want %d", a, tc.want)
			}
		})
	}
}

// TestSecureCookies: cookies are Secure when the site is public over
// https or the client came over https through a trusted proxy, even
// though the request reached this listener in the clear.
func TestSecureCookies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		public  string
		trusted []netip.Prefix
		proto   string
		want    bool
	}{
		{name: "https public URL", public: "https://chat.example", want: true},
		{name: "https through a trusted proxy", public: "http://chat.example", trusted: prefixes("127.0.0.1/32"), proto: "https", want: true},
		{name: "http through a trusted proxy", public: "http://chat.example", trusted: prefixes("127.0.0.1/32"), proto: "http", want: false},
		{name: "https claimed by an untrusted peer", public: "http://chat.example", proto: "https", want: false},
		{name: "plain http", public: "http://chat.example", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, false, func(o *Options) { o.PublicURL, o.TrustedProxies = tc.public, tc.trusted })
			f.store.setPassword(t, testNumber, "right-password")
			b := f.browser(t)
			if tc.proto != "" {
				b.header.Set("X-Forwarded-Proto", tc.proto)
			}
			check := func(what string, a answer, name string) {
				t.Helper()
				for _, c := range (&http.Response{Header: a.header}).Cookies() {
					if c.Name == name {
						if c.Secure != tc.want || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
							t.Errorf("%s: cookie %s Secure %v (want %v) HttpOnly %v SameSite %v", what, c.Name, c.Secure, tc.want, c.HttpOnly, c.SameSite)
						}
						return
					}
				}
				t.Errorf("%s: no cookie %s in %v", what, name, a.header)
			}
			a := b.get("/")
			check("home", a, formCookie)
			tok := csrfField.FindStringSubmatch(a.body)[1]
			a = b.post("/login", url.Values{"csrf": {tok}, "phone": {testNational}, "password": {"right-password"}})
			if a.code != http.StatusSeeOther {
				t.Fatal(a)
			}
			check("login", a, sessionCookie)
			// The jar keeps a Secure cookie for https only; hand it over.
			b.setCookie(sessionCookie, b.sessionFrom(a))
			check("logout", b.post("/logout", url.Values{"csrf": {b.token("/account")}}), sessionCookie)
		})
	}
}

// sessionFrom returns the session cookie's value set by answer a.
func (b *browser) sessionFrom(a answer) string {
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	b.t.Fatalf("no session cookie in %v", a.header)
	return ""
}

// TestClientIPBehindProxy: the password requests count towards the
// client IP that a trusted proxy forwarded, and towards the peer when
// the peer is not trusted, whatever it writes.
func TestClientIPBehindProxy(t *testing.T) {
	f := newFixtureWith(t, false, func(o *Options) { o.TrustedProxies = prefixes("127.0.0.1/32") })
	proxied := f.browser(t)
	proxied.header.Set("X-Forwarded-For", "203.0.113.9, 198.51.100.7")
	if a := proxied.post("/send-password", url.Values{"csrf": {proxied.token("/")}, "phone": {testNational}}); a.code != 200 {
		t.Fatal(a)
	}
	direct := f.browserFrom(t, "127.0.0.2")
	direct.header.Set("X-Forwarded-For", "198.51.100.7")
	if a := direct.post("/send-password", url.Values{"csrf": {direct.token("/")}, "phone": {testNational}}); a.code != 200 {
		t.Fatal(a)
	}
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/password", strings.NewReader(`{"phone":"`+testNational+`"}`))
	req.Header.Set("Content-Type", "application/json")
	proxied.do(req)
	want := []string{testNational + "|198.51.100.7", testNational + "|127.0.0.2", testNational + "|198.51.100.7"}
	if got := f.passwords.requests(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requests %q, want %q", got, want)
	}
}

// TestIPLockoutThroughWebLogin: failed web logins count per client IP in
// the lockout that XMPP logins share, both ways, as SPEC "Accounts" asks.
func TestIPLockoutThroughWebLogin(t *testing.T) {
	login := func(b *browser, phone, password string) answer {
		return b.post("/login", url.Values{"csrf": {b.token("/")}, "phone": {phone}, "password": {password}})
	}
	// wrongOnManyNumbers fails once on each of n numbers: never enough
	// for a number's own lock.
	wrongOnManyNumbers := func(t *testing.T, b *browser, n int) {
		t.Helper()
		for i := range n {
			if a := login(b, fmt.Sprintf("010-5555-%04d", i), "wrong-password"); a.code != 401 {
				t.Fatalf("failure %d: %v", i+1, a)
			}
		}
	}
	lockedFromAddress := func(t *testing.T, a answer) {
		t.Helper()
		if a.code != 429 || !strings.Contains(a.body, "Too many failed logins from your address") || a.header.Get("Retry-After") != "60" {
			t.Errorf("want 429 for the address: %v %v", a, a.header)
		}
	}

	t.Run("web failures lock the address for XMPP too", func(t *testing.T) {
		f := newFixture(t, false)
		f.store.setPassword(t, testNumber, "right-password")
		b := f.browser(t)
		wrongOnManyNumbers(t, b, testIPLockFailed)
		if d := f.ipLockout.Locked("ip:127.0.0.1"); d != time.Minute {
			t.Fatalf("the shared per-IP lockout has %v", d)
		}
		lockedFromAddress(t, login(b, testNational, "right-password"))
		if b.cookie(sessionCookie) != nil {
			t.Fatal("logged in while the address is locked")
		}
		// Another address is not locked.
		f.browserFrom(t, "127.0.0.2").login(testNational, "right-password")
		f.clock.Add(61 * time.Second)
		b.login(testNational, "right-password")
	})

	t.Run("XMPP failures lock the address for the web", func(t *testing.T) {
		f := newFixture(t, false)
		f.store.setPassword(t, testNumber, "right-password")
		for range testIPLockFailed {
			f.ipLockout.Fail("ip:127.0.0.1") // as xmppd counts a failed SASL exchange
		}
		lockedFromAddress(t, login(f.browser(t), testNational, "right-password"))
	})

	t.Run("a right password does not reset the address", func(t *testing.T) {
		f := newFixture(t, false)
		f.store.setPassword(t, testNumber, "right-password")
		b := f.browser(t)
		wrongOnManyNumbers(t, b, testIPLockFailed-1)
		f.browser(t).login(testNational, "right-password")
		if a := login(b, "010-5555-0009", "wrong-password"); a.code != 401 {
			t.Fatal(a)
		}
		lockedFromAddress(t, login(b, testNational, "right-password"))
	})

	t.Run("behind a trusted proxy the client IP counts", func(t *testing.T) {
		f := newFixtureWith(t, false, func(o *Options) { o.TrustedProxies = prefixes("127.0.0.1/32") })
		f.store.setPassword(t, testNumber, "right-password")
		b := f.browser(t)
		b.header.Set("X-Forwarded-For", "198.51.100.7")
		wrongOnManyNumbers(t, b, testIPLockFailed)
		if f.ipLockout.Locked("ip:198.51.100.7") == 0 || f.ipLockout.Locked("ip:127.0.0.1") != 0 {
			t.Fatal("the failures were not counted for the forwarded client")
		}
		lockedFromAddress(t, login(b, testNational, "right-password"))
		other := f.browser(t)
		other.header.Set("X-Forwarded-For", "198.51.100.8")
		other.login(testNational, "right-password")
	})

	t.Run("a number locked on its own", func(t *testing.T) {
		f := newFixture(t, false)
		b := f.browser(t)
		for range testLockFailed {
			login(b, testNational, "wrong-password")
		}
		a := login(b, testNational, "wrong-password")
		if a.code != 429 || !strings.Contains(a.body, "for this number") {
			t.Errorf("%v", a)
		}
		if f.ipLockout.Locked("ip:127.0.0.1") != 0 {
			t.Error("refusals of a locked number counted towards the address")
		}
	})
}
