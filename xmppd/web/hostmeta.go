package web

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
)

// relWebSocket is the XEP-0156 link relation of an XMPP over WebSocket
// endpoint.
const relWebSocket = "urn:xmpp:alt-connections:websocket"

// webSocketPath is where Options.WebSocket is served.
const webSocketPath = "/xmpp-websocket"

// webSocketURL is the endpoint as reached by this request: wss on TLS.
func webSocketURL(r *http.Request) string {
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	return scheme + "://" + r.Host + webSocketPath
}

// hostMeta serves GET /.well-known/host-meta (XRD) and host-meta.json
// (JRD): XEP-0156 discovery of the WebSocket endpoint, readable by web
// clients of any site.
func hostMeta(asJSON bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Vary", "Host")
		href := webSocketURL(r)
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
