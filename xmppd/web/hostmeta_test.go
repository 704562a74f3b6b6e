package web

import (
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHostMeta(t *testing.T) {
	called := false
	h := New(Options{WebSocket: func(w http.ResponseWriter, r *http.Request) { called = true }})
	for _, tc := range []struct {
		path string
		tls  bool
		want string
	}{
		{"/.well-known/host-meta", false, "ws://chat.example.com:5280/xmpp-websocket"},
		{"/.well-known/host-meta.json", false, "ws://chat.example.com:5280/xmpp-websocket"},
		{"/.well-known/host-meta", true, "wss://chat.example.com:5280/xmpp-websocket"},
		{"/.well-known/host-meta.json", true, "wss://chat.example.com:5280/xmpp-websocket"},
	} {
		r := httptest.NewRequest("GET", "http://chat.example.com:5280"+tc.path, nil)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %v", tc.path, w.Code, w.Header())
		}
		var links []struct{ Rel, Href string }
		if tc.path == "/.well-known/host-meta.json" {
			var jrd struct {
				Links []struct{ Rel, Href string } `json:"links"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &jrd); err != nil || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%s: %v %q", tc.path, err, w.Body)
			}
			links = jrd.Links
		} else {
			var xrd struct {
				XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
				Links   []struct {
					Rel  string `xml:"rel,attr"`
					Href string `xml:"href,attr"`
				} `xml:"Link"`
			}
			if err := xml.Unmarshal(w.Body.Bytes(), &xrd); err != nil || w.Header().Get("Content-Type") != "application/xrd+xml; charset=utf-8" {
				t.Fatalf("%s: %v %q", tc.path, err, w.Body)
			}
			for _, l := range xrd.Links {
				links = append(links, struct{ Rel, Href string }{l.Rel, l.Href})
			}
		}
		if len(links) != 1 || links[0].Rel != "urn:xmpp:alt-connections:websocket" || links[0].Href != tc.want {
			t.Errorf("%s (tls %v): %+v", tc.path, tc.tls, links)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/xmpp-websocket", nil))
	if !called {
		t.Error("/xmpp-websocket not routed to Options.WebSocket")
	}

	// Without a WebSocket endpoint, nothing is advertised.
	w = httptest.NewRecorder()
	New(Options{}).ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/host-meta", nil))
	if w.Code == 200 {
		t.Errorf("host-meta without WebSocket: %d %q", w.Code, w.Body)
	}
}
