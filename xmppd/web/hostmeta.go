package web

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/url"
	"strings"

	"dialtone/internal/forwarded"
)

// relWebSocket is the XEP-0156 link relation of an XMPP over WebSocket
// endpoint.
const relWebSocket = "urn:xmpp:alt-connections:websocket"

// webSocketPath is where Options.WebSocket is served.
const webSocketPath = "/xmpp-websocket"

// webSocketURL is the endpoint under the public URL: wss when that is
// https or the client came over https (through a trusted proxy), ws
// otherwise. The request's Host header plays no part, so that a forged
// one cannot put another server into a cached answer.
func webSocketURL(public *url.URL, https bool) string {
	u := *public
	u.Scheme = "ws"
	if https || public.Scheme == "https" {
		u.Scheme = "wss"
	}
	u.Path = strings.TrimRight(public.Path, "/") + webSocketPath
	u.RawPath = ""
	return u.String()
}

// hostMeta serves GET /.well-known/host-meta (XRD) and host-meta.json
// (JRD): XEP-0156 discovery of the WebSocket endpoint, readable by web
// clients of any site. With trusted proxies the scheme follows
// X-Forwarded-Proto, which caches are told.
func hostMeta(public *url.URL, proxied, asJSON bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		if proxied {
			h.Set("Vary", "X-Forwarded-Proto")
		}
		href := webSocketURL(public, forwarded.ClientOf(r).HTTPS)
		if asJSON {
			b, _ := json.Marshal(map[string]any{
				"links": []map[string]string{{"rel": relWebSocket, "href": href}},
			})
			h.Set("Content-Type", "application/json")
			w.Write(append(b, '\n'))
			return
		}
		var esc strings.Builder
		xml.EscapeText(&esc, []byte(href))
		h.Set("Content-Type", "application/xrd+xml; charset=utf-8")
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
			`<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">` + "\n" +
			`  <Link rel="` + relWebSocket + `" href="` + esc.String() + `"/>` + "\n" +
			`</XRD>` + "\n"))
	}
}
