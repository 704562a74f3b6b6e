package web

import (
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// hostMetaLinks fetches path from h with r's settings and returns the
// links of the XRD or JRD.
func hostMetaLinks(t *testing.T, h http.Handler, r *http.Request) []struct{ Rel, Href string } {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("%s: %d %v", r.URL.Path, w.Code, w.Header())
	}
	var links []struct{ Rel, Href string }
	if strings.HasSuffix(r.URL.Path, ".json") {
		var jrd struct {
			Links []struct{ Rel, Href string } `json:"links"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &jrd); err != nil || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %v %q", r.URL.Path, err, w.Body)
		}
		return jrd.Links
	}
	var xrd struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"Link"`
	}
	if err := xml.Unmarshal(w.Body.Bytes(), &xrd); err != nil || w.Header().Get("Content-Type") != "application/xrd+xml; charset=utf-8" {
		t.Fatalf("%s: %v %q", r.URL.Path, err, w.Body)
	}
	for _, l := range xrd.Links {
		links = append(links, struct{ Rel, Href string }{l.Rel, l.Href})
	}
	return links
}

// TestHostMeta: the link is made from the public URL, never from the
// request's Host (or X-Forwarded-Host) header, which anyone can forge to
// poison a cache; only the scheme follows https through a trusted proxy.
func TestHostMeta(t *testing.T) {
	called := false
	ws := func(w http.ResponseWriter, r *http.Request) { called = true }
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name    string
		public  string
		trusted []netip.Prefix
		peer    string // default: httptest's 192.0.2.1
		tls     bool
		proto   string // X-Forwarded-Proto
		want    string
	}{
		{name: "http", public: "http://chat.example.com:5280", want: "ws://chat.example.com:5280/xmpp-websocket"},
		{name: "https", public: "https://chat.example.com", want: "wss://chat.example.com/xmpp-websocket"},
		{name: "https with a path", public: "https://example.com/dialtone", want: "wss://example.com/dialtone/xmpp-websocket"},
		{name: "direct TLS", public: "http://chat.example.com:5280", tls: true, want: "wss://chat.example.com:5280/xmpp-websocket"},
		{name: "https through a trusted proxy", public: "http://chat.example.com", trusted: proxies, peer: "10.0.0.1:4711", proto: "https", want: "wss://chat.example.com/xmpp-websocket"},
		{name: "http through a trusted proxy", public: "http://chat.example.com", trusted: proxies, peer: "10.0.0.1:4711", proto: "http", want: "ws://chat.example.com/xmpp-websocket"},
		{name: "https claimed by an untrusted peer", public: "http://chat.example.com", trusted: proxies, proto: "https", want: "ws://chat.example.com/xmpp-websocket"},
	} {
		h := New(Options{WebSocket: ws, PublicURL: tc.public, TrustedProxies: tc.trusted})
		for _, path := range []string{"/.well-known/host-meta", "/.well-known/host-meta.json"} {
			r := httptest.NewRequest("GET", "http://evil.example:666"+path, nil)
			r.Header.Set("X-Forwarded-Host", "evil.example")
			if tc.peer != "" {
				r.RemoteAddr = tc.peer
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			links := hostMetaLinks(t, h, r)
			if len(links) != 1 || links[0].Rel != "urn:xmpp:alt-connections:websocket" || links[0].Href != tc.want {
				t.Errorf("%s %s: %+v, want %s", tc.name, path, links, tc.want)
			}
		}
	}

	// Caches are told what the answer depends on.
	w := httptest.NewRecorder()
	New(Options{WebSocket: ws, PublicURL: "http://chat.example.com", TrustedProxies: proxies}).
		ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/host-meta", nil))
	if v := w.Header().Values("Vary"); len(v) != 1 || v[0] != "X-Forwarded-Proto" {
		t.Errorf("Vary %q with trusted proxies", v)
	}
	w = httptest.NewRecorder()
	New(Options{WebSocket: ws, PublicURL: "http://chat.example.com"}).
		ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/host-meta", nil))
	if v := w.Header().Values("Vary"); len(v) != 0 {
		t.Errorf("Vary %q without trusted proxies: the answer is always the same", v)
	}

	w = httptest.NewRecorder()
	New(Options{WebSocket: ws, PublicURL: "http://chat.example.com"}).ServeHTTP(w, httptest.NewRequest("GET", "/xmpp-websocket", nil))
	if !called {
		t.Error("/xmpp-websocket not routed to Options.WebSocket")
	}

	// Without a WebSocket endpoint, or without a public URL to name it
	// by, nothing is advertised.
	for _, opts := range []Options{{PublicURL: "http://chat.example.com"}, {WebSocket: ws}} {
		w = httptest.NewRecorder()
		New(opts).ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/host-meta", nil))
		if w.Code == 200 {
			t.Errorf("host-meta with %+v: %d %q", opts, w.Code, w.Body)
		}
	}
}
