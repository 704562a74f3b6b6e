package extdisco_test

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/turn"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/extdisco"
	"dialtone/xmppd/router"
)

type services struct {
	Services []struct {
		Type      string `xml:"type,attr"`
		Host      string `xml:"host,attr"`
		Port      string `xml:"port,attr"`
		Transport string `xml:"transport,attr"`
		Username  string `xml:"username,attr"`
		Password  string `xml:"password,attr"`
		Expires   string `xml:"expires,attr"`
	} `xml:"service"`
}

func iq(c *xmpptest.Client, id, payload string) xmpptest.Elem {
	c.T.Helper()
	c.Send(`<iq type='get' id='` + id + `' to='localhost'>` + payload + `</iq>`)
	return c.Expect(id, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
}

func start(t *testing.T, servers *turn.Servers, now time.Time) *xmpptest.Client {
	t.Helper()
	ts := servertest.Start(t, servertest.With(router.ModuleFunc(func(h *router.Hooks) error {
		m := extdisco.New(h.Router(), servers)
		m.Now = func() time.Time { return now }
		return m.Register(h)
	})))
	const alice = "+821012345678"
	c := xmpptest.Login(t, ts.Addr, alice, ts.Account(t, alice), "phone")
	for _, f := range ts.Router().Hooks().DiscoFeatures(router.ScopeServer) {
		if f == extdisco.NS && len(servers.URIs) == 0 {
			t.Fatal("extdisco advertised without servers")
		}
	}
	return c
}

// The STUN and TURN servers are listed, the TURN ones with coturn REST
// credentials valid for a day; a type filter and a credentials request
// for one server work; unknown servers are item-not-found.
func TestServices(t *testing.T) {
	uris, err := turn.ParseURIs([]string{"turn:turn.example.org:3478?transport=udp", "stun:turn.example.org:3478"})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("s3cret")
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	c := start(t, &turn.Servers{URIs: uris, Secret: secret}, now)

	e := iq(c, "a", `<services xmlns='urn:xmpp:extdisco:2'/>`)
	var got services
	if err := xml.Unmarshal([]byte(e.Inner), &got); err != nil || e.Attr("type") != "result" || len(got.Services) != 2 {
		t.Fatalf("services %v: %v", e, err)
	}
	tu, st := got.Services[0], got.Services[1]
	user, pass := turn.Credential(secret, now.Add(24*time.Hour), "+821012345678")
	if tu.Type != "turn" || tu.Host != "turn.example.org" || tu.Port != "3478" || tu.Transport != "udp" ||
		tu.Username != user || tu.Password != pass || tu.Expires != "2026-05-02T10:00:00Z" {
		t.Fatalf("turn %+v, want %s/%s", tu, user, pass)
	}
	if st.Type != "stun" || st.Username != "" || st.Password != "" {
		t.Fatalf("stun %+v", st)
	}

	e = iq(c, "b", `<services xmlns='urn:xmpp:extdisco:2' type='stun'/>`)
	got = services{}
	if err := xml.Unmarshal([]byte(e.Inner), &got); err != nil || len(got.Services) != 1 || got.Services[0].Type != "stun" {
		t.Fatalf("stun only %v: %v", e, err)
	}
	e = iq(c, "c", `<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn'/></credentials>`)
	got = services{}
	if err := xml.Unmarshal([]byte(e.Inner), &got); err != nil || len(got.Services) != 1 || got.Services[0].Password != pass ||
		!strings.HasPrefix(e.Inner, `<credentials xmlns="urn:xmpp:extdisco:2"`) {
		t.Fatalf("credentials %v: %v", e, err)
	}
	for id, p := range map[string]string{
		"d": `<credentials xmlns='urn:xmpp:extdisco:2'><service host='other.example.org' type='turn'/></credentials>`,
		"e": `<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn' port='9'/></credentials>`,
	} {
		if e := iq(c, id, p); e.Attr("type") != "error" || !strings.Contains(e.Inner, "item-not-found") {
			t.Errorf("%s: %v", id, e)
		}
	}
	if e := iq(c, "f", `<credentials xmlns='urn:xmpp:extdisco:2'/>`); !strings.Contains(e.Inner, "bad-request") {
		t.Errorf("empty credentials: %v", e)
	}
}

// Without XMPPD_TURN_URIS nothing is advertised or answered.
func TestNoServers(t *testing.T) {
	c := start(t, &turn.Servers{}, time.Now())
	if e := iq(c, "a", `<services xmlns='urn:xmpp:extdisco:2'/>`); e.Attr("type") != "error" || !strings.Contains(e.Inner, "service-unavailable") {
		t.Fatalf("services: %v", e)
	}
}
