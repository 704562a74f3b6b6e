package xmppd_test

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"mellium.im/sasl"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
	xws "dialtone/xmppd/websocket"
)

const wsOpen = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`

// wsClient is a plain RFC 7395 client: one frame per element.
type wsClient struct {
	t   testing.TB
	ws  *websocket.Conn
	JID string
}

// startWS serves the test server's WebSocket endpoint on a loopback HTTP
// listener (with TLS when tls) and returns its ws:// or wss:// URL and
// an HTTP client for it.
func startWS(t testing.TB, ts *testServer, tls bool) (string, *http.Client) {
	t.Helper()
	h := http.HandlerFunc(ts.ServeWebSocket)
	var hs *httptest.Server
	if tls {
		hs = httptest.NewTLSServer(h)
	} else {
		hs = httptest.NewServer(h)
	}
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/xmpp-websocket", hs.Client()
}

func dialWS(t testing.TB, url string, hc *http.Client) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"xmpp"}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if ws.Subprotocol() != "xmpp" {
		t.Fatalf("subprotocol %q (%v)", ws.Subprotocol(), resp.Header)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, ws: ws}
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// frame reads the next frame as it is.
func (c *wsClient) frame() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	typ, b, err := c.ws.Read(ctx)
	if err == nil && typ != websocket.MessageText {
		c.t.Fatalf("binary frame %q", b)
	}
	return string(b), err
}

// next reads the next frame, which must be one complete element.
func (c *wsClient) next() (xmpptest.Elem, string) {
	c.t.Helper()
	f, err := c.frame()
	if err != nil {
		c.t.Fatalf("%s: reading: %v", c.JID, err)
	}
	var e xmpptest.Elem
	if err := xml.Unmarshal([]byte(f), &e); err != nil {
		c.t.Fatalf("frame %q is not one element: %v", f, err)
	}
	return e, f
}

func (c *wsClient) expect(what string, f func(xmpptest.Elem) bool) (xmpptest.Elem, string) {
	c.t.Helper()
	for range 20 {
		if e, raw := c.next(); f(e) {
			return e, raw
		}
	}
	c.t.Fatalf("never got %s", what)
	return xmpptest.Elem{}, ""
}

// open sends <open/> and returns the server's <open/> and features.
func (c *wsClient) open() (xmpptest.Elem, xmpptest.Elem) {
	c.t.Helper()
	c.send(wsOpen)
	o, raw := c.next()
	if o.XMLName != (xml.Name{Space: xws.NSFraming, Local: "open"}) || o.Attr("from") != "localhost" || o.Attr("version") != "1.0" || o.Attr("id") == "" {
		c.t.Fatalf("open: %s", raw)
	}
	f, raw := c.next()
	if f.XMLName != (xml.Name{Space: "http://etherx.jabber.org/streams", Local: "features"}) {
		c.t.Fatalf("features: %s", raw)
	}
	return o, f
}

func (c *wsClient) auth(mech sasl.Mechanism, user, pass string) string {
	c.t.Helper()
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(pass), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="` + mech.Name + `">` + base64.StdEncoding.EncodeToString(resp) + `</auth>`)
	for range 5 {
		e, raw := c.next()
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Inner))
		switch e.XMLName.Local {
		case "challenge":
			_, resp, err := neg.Step(data)
			if err != nil {
				c.t.Fatalf("SASL step: %v", err)
			}
			c.send(`<response xmlns="urn:ietf:params:xml:ns:xmpp-sasl">` + base64.StdEncoding.EncodeToString(resp) + `</response>`)
		case "success":
			if mech.Name == "PLAIN" {
				return ""
			}
			if _, _, err := neg.Step(data); err != nil {
				c.t.Fatalf("server signature: %v", err)
			}
			return ""
		case "failure":
			return raw
		default:
			c.t.Fatalf("unexpected %s during SASL", raw)
		}
	}
	c.t.Fatal("SASL did not end")
	return ""
}

// login opens, authenticates with SCRAM-SHA-256 and binds res.
func (c *wsClient) login(user, pass, res string) {
	c.t.Helper()
	_, f := c.open()
	if !strings.Contains(f.Inner, "SCRAM-SHA-256") || strings.Contains(f.Inner, "starttls") {
		c.t.Fatalf("features: %s", f.Inner)
	}
	if r := c.auth(sasl.ScramSha256, user, pass); r != "" {
		c.t.Fatalf("login: %s", r)
	}
	_, f = c.open()
	if !strings.Contains(f.Inner, "urn:ietf:params:xml:ns:xmpp-bind") {
		c.t.Fatalf("features after auth: %s", f.Inner)
	}
	c.send(`<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>` + res + `</resource></bind></iq>`)
	e, raw := c.expect("bind result", func(e xmpptest.Elem) bool { return e.Attr("id") == "bind1" })
	var r struct {
		JID string `xml:"bind>jid"`
	}
	xml.Unmarshal([]byte("<r>"+e.Inner+"</r>"), &r)
	if e.Attr("type") != "result" || r.JID == "" || !strings.HasPrefix(raw, `<iq xmlns="jabber:client"`) {
		c.t.Fatalf("bind: %s", raw)
	}
	c.JID = r.JID
}

// streamError reads a stream error, then <close/>, and returns the condition.
func (c *wsClient) streamError() string {
	c.t.Helper()
	e, raw := c.expect("stream error", func(e xmpptest.Elem) bool {
		return e.XMLName == xml.Name{Space: "http://etherx.jabber.org/streams", Local: "error"}
	})
	var body struct {
		Any []struct{ XMLName xml.Name } `xml:",any"`
	}
	xml.Unmarshal([]byte("<e>"+e.Inner+"</e>"), &body)
	if len(body.Any) == 0 {
		c.t.Fatalf("stream error without condition: %s", raw)
	}
	c.expectClose()
	return body.Any[0].XMLName.Local
}

// expectClose reads <close/> and then the end of the WebSocket.
func (c *wsClient) expectClose() {
	c.t.Helper()
	if e, raw := c.next(); e.XMLName != (xml.Name{Space: xws.NSFraming, Local: "close"}) {
		c.t.Fatalf("expected <close/>, got %s", raw)
	}
	// Answered as RFC 7395 §3.6 asks (the server may be gone already).
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	c.ws.Write(ctx, websocket.MessageText, []byte(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`))
	f, err := c.frame()
	if err == nil {
		c.t.Fatalf("frame after <close/>: %s", f)
	}
	if s := websocket.CloseStatus(err); s != websocket.StatusNormalClosure {
		c.t.Fatalf("WebSocket ended with %v (%v)", s, err)
	}
}

func TestWebSocketSession(t *testing.T) {
	ts := startServer(t)
	url, hc := startWS(t, ts, false)
	pa, pb := ts.account(t, alice), ts.account(t, bob)

	w := dialWS(t, url, hc)
	w.login(alice, pa, "browser")
	if w.JID != alice+"@localhost/browser" {
		t.Fatalf("bound %s", w.JID)
	}
	b := xmpptest.Login(t, ts.addr, bob, pb, "laptop")

	// WebSocket → TCP
	w.send(`<message xmlns="jabber:client" type="chat" id="m1" to="` + bob + `@localhost/laptop"><body>over &amp; out</body></message>`)
	m := b.Expect("m1", func(e xmpptest.Elem) bool { return e.Attr("id") == "m1" })
	if m.Attr("from") != w.JID || !strings.Contains(m.Inner, "over &amp; out") {
		t.Fatalf("got %v", m)
	}
	// TCP → WebSocket: one element per frame, in jabber:client
	b.Send(`<message type='chat' id='m2' to='` + w.JID + `'><body>back</body></message>`)
	e, raw := w.expect("m2", func(e xmpptest.Elem) bool { return e.Attr("id") == "m2" })
	if e.XMLName != (xml.Name{Space: "jabber:client", Local: "message"}) || e.Attr("from") != b.JID ||
		!strings.HasPrefix(raw, `<message xmlns="jabber:client"`) || !strings.HasSuffix(raw, "</message>") {
		t.Fatalf("got %s", raw)
	}
	// an IQ round trip with the server
	w.send(`<iq xmlns="jabber:client" type="get" id="p1" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	if e, raw := w.expect("ping reply", func(e xmpptest.Elem) bool { return e.Attr("id") == "p1" }); e.Attr("type") != "result" {
		t.Fatalf("ping: %s", raw)
	}

	// <close/> is answered with <close/>, and the session is gone.
	w.send(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
	w.expectClose()
	waitUntil(t, "the session to go after <close/>", func() bool { return len(ts.Sessions(mustJID(alice+"@localhost"))) == 0 })
}

func TestWebSocketMechanisms(t *testing.T) {
	ts := startServer(t)
	// Plain ws: no PLAIN, which would put the password on the wire.
	url, hc := startWS(t, ts, false)
	_, f := dialWS(t, url, hc).open()
	if strings.Contains(f.Inner, ">PLAIN<") || strings.Contains(f.Inner, "starttls") || !strings.Contains(f.Inner, "SCRAM-SHA-1") {
		t.Fatalf("ws features: %s", f.Inner)
	}
	// wss: PLAIN too.
	surl, shc := startWS(t, ts, true)
	c := dialWS(t, surl, shc)
	_, f = c.open()
	if !strings.Contains(f.Inner, ">PLAIN<") || strings.Contains(f.Inner, "starttls") {
		t.Fatalf("wss features: %s", f.Inner)
	}
	pa := ts.account(t, alice)
	if r := c.auth(sasl.Plain, alice, pa); r != "" {
		t.Fatalf("PLAIN over wss: %s", r)
	}
	// PLAIN refused on plain ws even when asked for.
	c = dialWS(t, url, hc)
	c.open()
	if r := c.auth(sasl.Plain, alice, pa); !strings.Contains(r, "invalid-mechanism") {
		t.Fatalf("PLAIN over ws: %q", r)
	}
	// STARTTLS is no part of RFC 7395.
	c = dialWS(t, url, hc)
	c.open()
	c.send(`<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>`)
	if cond := c.streamError(); cond != "policy-violation" {
		t.Fatalf("starttls: %s", cond)
	}
}

func TestWebSocketErrors(t *testing.T) {
	ts := startServer(t, func(c *xmppd.Config) { c.MaxStanzaSize = 10000 })
	url, hc := startWS(t, ts, false)

	for _, tc := range []struct {
		name   string
		opened bool // <open/> exchanged first
		send   string
		cond   string
	}{
		{"not-well-formed", true, `<message xmlns="jabber:client"><body>x</message>`, "not-well-formed"},
		{"incomplete element", true, `<message xmlns="jabber:client"><body>x</body>`, "not-well-formed"},
		{"before open", false, `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"`, "not-well-formed"},
		{"frame too big", true, `<message xmlns="jabber:client"><body>` + strings.Repeat("x", 20000) + `</body></message>`, "policy-violation"},
		{"wrong host", false, `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.org" version="1.0"/>`, "host-unknown"},
		{"stanza before auth", true, `<message xmlns="jabber:client" to="` + bob + `@localhost"><body>x</body></message>`, "not-authorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, url, hc)
			if tc.opened {
				c.open()
			}
			c.send(tc.send)
			if !tc.opened { // our <open/> comes first, then the error
				if e, raw := c.next(); e.XMLName.Local != "open" {
					t.Fatalf("got %s", raw)
				}
			}
			if cond := c.streamError(); cond != tc.cond {
				t.Fatalf("got %s, want %s", cond, tc.cond)
			}
		})
	}
	t.Run("close before auth", func(t *testing.T) {
		c := dialWS(t, url, hc)
		c.open()
		c.send(`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`)
		c.expectClose()
	})
	t.Run("no subprotocol", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
		if err == nil {
			ws.CloseNow()
			t.Fatal("upgraded without the xmpp subprotocol")
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got %v, %v", resp, err)
		}
	})
	t.Run("no upgrade", func(t *testing.T) {
		resp, err := hc.Get("http" + strings.TrimPrefix(url, "ws"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestWebSocketShutdown(t *testing.T) {
	ts := startServer(t)
	url, hc := startWS(t, ts, false)
	pa := ts.account(t, alice)
	w := dialWS(t, url, hc)
	w.login(alice, pa, "x")
	pending := dialWS(t, url, hc)
	pending.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	for _, c := range []*wsClient{w, pending} {
		if cond := c.streamError(); cond != "system-shutdown" {
			t.Fatalf("got %s", cond)
		}
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestWebSocketDeadlines(t *testing.T) {
	ts := startServer(t, func(c *xmppd.Config) {
		c.AuthTimeout = 300 * time.Millisecond
		c.IdleTimeout = 200 * time.Millisecond
		c.PingTimeout = 200 * time.Millisecond
	})
	url, hc := startWS(t, ts, false)

	// negotiation that takes too long
	c := dialWS(t, url, hc)
	c.open()
	if cond := c.streamError(); cond != "connection-timeout" {
		t.Fatalf("negotiation: %s", cond)
	}

	// an idle session is pinged, kept while it answers, closed when it does not
	w := dialWS(t, url, hc)
	w.login(alice, ts.account(t, alice), "idle")
	ping, raw := w.next()
	if ping.XMLName.Local != "iq" || !strings.Contains(ping.Inner, "urn:xmpp:ping") || !strings.HasPrefix(raw, `<iq xmlns="jabber:client"`) {
		t.Fatalf("expected a ping: %s", raw)
	}
	w.send(`<iq xmlns="jabber:client" type="result" id="` + ping.Attr("id") + `"/>`)
	if ping, raw = w.next(); ping.XMLName.Local != "iq" || !strings.Contains(ping.Inner, "urn:xmpp:ping") {
		t.Fatalf("expected a second ping: %s", raw)
	}
	if cond := w.streamError(); cond != "connection-timeout" {
		t.Fatalf("idle: %s", cond)
	}
}
