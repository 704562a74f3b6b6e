package time_test

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	xmpptime "dialtone/xmppd/mod/time"
	"dialtone/xmppd/router"
)

// A client asks the server for its time and gets it in UTC; the feature
// is advertised; a set is nobody's.
func TestEntityTime(t *testing.T) {
	clock := time.Date(2026, 12, 3, 8, 9, 10, 120e6, time.FixedZone("KST", 9*3600))
	m := xmpptime.New()
	m.Now = func() time.Time { return clock }
	ts := servertest.Start(t, servertest.With(m))
	const alice = "+821012345678"
	c := xmpptest.Login(t, ts.Addr, alice, ts.Account(t, alice), "phone")

	c.Send(`<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>`)
	e := c.Expect("time", func(e xmpptest.Elem) bool { return e.Attr("id") == "t1" })
	var got struct {
		XMLName xml.Name `xml:"urn:xmpp:time time"`
		TZO     string   `xml:"tzo"`
		UTC     string   `xml:"utc"`
	}
	if err := xml.Unmarshal([]byte(e.Inner), &got); err != nil || e.Attr("type") != "result" || e.Attr("from") != "localhost" {
		t.Fatalf("answer %v: %v", e, err)
	}
	if got.TZO != "+00:00" || got.UTC != "2026-12-02T23:09:10.120Z" {
		t.Fatalf("time %+v", got)
	}

	c.Send(`<iq type='set' id='t2' to='localhost'><time xmlns='urn:xmpp:time'/></iq>`)
	if e := c.Expect("set", func(e xmpptest.Elem) bool { return e.Attr("id") == "t2" }); e.Attr("type") != "error" || !strings.Contains(e.Inner, "service-unavailable") {
		t.Fatalf("set: %v", e)
	}
	feats := ts.Router().Hooks().DiscoFeatures(router.ScopeServer)
	found := false
	for _, f := range feats {
		found = found || f == xmpptime.NS
	}
	if !found {
		t.Fatalf("urn:xmpp:time not advertised: %v", feats)
	}
}
