package forwarded

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func prefixes(t *testing.T, list ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestResolve(t *testing.T) {
	proxies := prefixes(t, "10.0.0.0/8", "::1/128")
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		peer    string
		tls     bool
		xff     []string // one X-Forwarded-For header each
		proto   []string // one X-Forwarded-Proto header each
		wantIP  string
		wantTLS bool
	}{
		{name: "direct", peer: "192.0.2.1:4711", wantIP: "192.0.2.1"},
		{name: "direct TLS", peer: "192.0.2.1:4711", tls: true, wantIP: "192.0.2.1", wantTLS: true},
		{name: "spoofed, nothing trusted", peer: "192.0.2.1:4711", xff: []string{"198.51.100.7"}, proto: []string{"https"}, wantIP: "192.0.2.1"},
		{name: "spoofed, peer not trusted", trusted: proxies, peer: "192.0.2.1:4711", xff: []string{"198.51.100.7"}, proto: []string{"https"}, wantIP: "192.0.2.1"},
		{name: "trusted proxy", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"198.51.100.7"}, proto: []string{"https"}, wantIP: "198.51.100.7", wantTLS: true},
		{name: "trusted proxy over http", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"198.51.100.7"}, proto: []string{"http"}, wantIP: "198.51.100.7"},
		{name: "proto in capitals", trusted: proxies, peer: "10.0.0.1:4711", proto: []string{"HTTPS"}, wantIP: "10.0.0.1", wantTLS: true},
		{name: "proto list: the nearest proxy's", trusted: proxies, peer: "10.0.0.1:4711", proto: []string{"https, http"}, wantIP: "10.0.0.1"},
		{name: "proto repeated: the last", trusted: proxies, peer: "10.0.0.1:4711", proto: []string{"http", "https"}, wantIP: "10.0.0.1", wantTLS: true},
		{name: "no XFF from a trusted proxy", trusted: proxies, peer: "10.0.0.1:4711", wantIP: "10.0.0.1"},
		{name: "empty XFF", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{""}, wantIP: "10.0.0.1"},
		{
			name: "chain with a client's lie on the left", trusted: proxies, peer: "10.0.0.1:4711",
			xff: []string{"203.0.113.9, 198.51.100.7, 10.0.0.2"}, wantIP: "198.51.100.7",
		},
		{
			name: "chain over repeated headers", trusted: proxies, peer: "10.0.0.1:4711",
			xff: []string{"203.0.113.9", "198.51.100.7,10.0.0.2"}, wantIP: "198.51.100.7",
		},
		{name: "only proxies", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"10.0.0.3, 10.0.0.2"}, wantIP: "10.0.0.3"},
		{name: "garbage nearest", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"198.51.100.7, garbage"}, wantIP: "10.0.0.1"},
		{name: "garbage behind a proxy", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"garbage, 10.0.0.2"}, wantIP: "10.0.0.2"},
		{name: "address with port", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"198.51.100.7:1234"}, wantIP: "198.51.100.7"},
		{name: "IPv6 with port", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"[2001:db8::1]:1234"}, wantIP: "2001:db8::1"},
		{name: "IPv6 in brackets", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"[2001:db8::1]"}, wantIP: "2001:db8::1"},
		{name: "IPv4-mapped client", trusted: proxies, peer: "10.0.0.1:4711", xff: []string{"::ffff:198.51.100.7"}, wantIP: "198.51.100.7"},
		{name: "IPv4-mapped peer", trusted: proxies, peer: "[::ffff:10.0.0.1]:4711", xff: []string{"198.51.100.7"}, wantIP: "198.51.100.7"},
		{name: "IPv6 loopback proxy", trusted: proxies, peer: "[::1]:4711", xff: []string{"2001:db8::2"}, wantIP: "2001:db8::2"},
		{name: "peer without port", trusted: proxies, peer: "pipe", xff: []string{"198.51.100.7"}, wantIP: "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tc.proto {
				r.Header.Add("X-Forwarded-Proto", v)
			}
			got := Resolve(r, tc.trusted)
			if got.IP != tc.wantIP || got.HTTPS != tc.wantTLS {
				t.Errorf("got %+v, want IP %s HTTPS %v", got, tc.wantIP, tc.wantTLS)
			}
		})
	}
}

func TestHandlerAndClientOf(t *testing.T) {
	var seen Client
	h := Handler(prefixes(t, "10.0.0.0/8"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = ClientOf(r)
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:4711"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	r.Header.Set("X-Forwarded-Proto", "https")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if seen != (Client{IP: "198.51.100.7", HTTPS: true}) {
		t.Errorf("through Handler: %+v", seen)
	}
	// Without Handler nobody is trusted.
	if c := ClientOf(r); c != (Client{IP: "10.0.0.1"}) {
		t.Errorf("without Handler: %+v", c)
	}
}

func TestAllowed(t *testing.T) {
	nets := prefixes(t, "127.0.0.1/32", "2001:db8::/32")
	for ip, want := range map[string]bool{
		"127.0.0.1":        true,
		"127.0.0.2":        false,
		"::ffff:127.0.0.1": true,
		"2001:db8::5":      true,
		"2001:db9::5":      false,
		"garbage":          false,
		"":                 false,
	} {
		if got := Allowed(ip, nets); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", ip, got, want)
		}
	}
	if Allowed("127.0.0.1", nil) {
		t.Error("no networks allowed someone")
	}
}

// FuzzResolve: any forwarding headers, from a trusted or an untrusted
// peer: no panic, an untrusted peer is never believed, and the client IP
// is the peer's or an address.
func FuzzResolve(f *testing.F) {
	f.Add("203.0.113.9, 198.51.100.7, 10.0.0.2", "https", true)
	f.Add("[2001:db8::1]:80,,garbage", "http, https", true)
	f.Add("10.0.0.3", "HTTPS", false)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, xff, proto string, fromProxy bool) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:4711"
		if fromProxy {
			r.RemoteAddr = "10.0.0.1:4711"
		}
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("X-Forwarded-Proto", proto)
		c := Resolve(r, trusted)
		if !fromProxy && (c.IP != "192.0.2.1" || c.HTTPS) {
			t.Fatalf("an untrusted peer was believed: %+v", c)
		}
		if _, err := netip.ParseAddr(c.IP); err != nil {
			t.Fatalf("client IP %q is no address", c.IP)
		}
	})
}
