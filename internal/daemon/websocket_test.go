package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"dialtone/internal/xmpptest"
)

// testWebSocket finds the WebSocket endpoint the way a web client does
// (XEP-0156 host-meta.json) and opens and closes a stream on it.
func testWebSocket(t *testing.T, s *daemonUnderTest) {
	resp, err := http.Get("http://" + s.d.Addr("http") + "/.well-known/host-meta.json")
	if err != nil {
		t.Fatal(err)
	}
	var jrd struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jrd)
	resp.Body.Close()
	if err != nil || len(jrd.Links) != 1 || jrd.Links[0].Rel != "urn:xmpp:alt-connections:websocket" {
		t.Fatalf("host-meta.json: %v %+v", err, jrd)
	}
	url := jrd.Links[0].Href
	if url != "ws://"+s.d.Addr("http")+"/xmpp-websocket" {
		t.Fatalf("advertised %s", url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send := func(s string) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(prefix string) string {
		t.Helper()
		_, b, err := ws.Read(ctx)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			t.Fatalf("want %s…, got %q, %v", prefix, b, err)
		}
		return string(b)
	}
	send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="` + domain + `" version="1.0"/>`)
	read(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"`)
	if f := read(`<stream:features xmlns:stream="http://etherx.jabber.org/streams">`); !strings.Contains(f, "SCRAM-SHA-256") || strings.Contains(f, "starttls") || strings.Contains(f, ">PLAIN<") {
		t.Fatalf("features: %s", f)
	}
	send(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
	read(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
}
