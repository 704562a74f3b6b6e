package upload_test

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
	"dialtone/storage"
	fileupload "dialtone/upload"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/disco"
	"dialtone/xmppd/mod/upload"
	"dialtone/xmppd/router"
)

// slotAnswer is XEP-0363's <slot/>.
type slotAnswer struct {
	XMLName xml.Name `xml:"urn:xmpp:http:upload:0 slot"`
	Put     struct {
		URL     string `xml:"url,attr"`
		Headers []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"header"`
	} `xml:"put"`
	Get struct {
		URL string `xml:"url,attr"`
	} `xml:"get"`
}

func iq(c *xmpptest.Client, id, to, payload string) xmpptest.Elem {
	c.T.Helper()
	c.Send(`<iq type='get' id='` + id + `' to='` + to + `'>` + payload + `</iq>`)
	return c.Expect(id, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
}

// A client finds upload.DOMAIN among the domain's items, reads its
// limit from the disco#info form, asks for a slot over XMPP and PUTs
// the file to the slot's URL; the GET URL serves it. A file over the
// limit is refused with <file-too-large/> and the limit.
func TestUploadSlot(t *testing.T) {
	data := t.TempDir()
	db, err := storage.Open(context.Background(), "", data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := &fileupload.Service{Store: db, Dir: filepath.Join(data, "uploads"), Key: []byte("0123456789abcdef0123456789abcdef"),
		MaxFileSize: 1000, Quota: 1500}
	mux := http.NewServeMux()
	mux.Handle(fileupload.Path, svc)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	svc.PublicURL = hs.URL

	ts := servertest.Start(t, servertest.With(router.ModuleFunc(func(h *router.Hooks) error {
		return upload.New(h.Router(), svc, svc.MaxFileSize).Register(h)
	}), router.ModuleFunc(func(h *router.Hooks) error { return disco.New(h.Router(), "test").Register(h) })))
	const alice = "+821012345678"
	c := xmpptest.Login(t, ts.Addr, alice, ts.Account(t, alice), "phone")
	const host = "upload." + servertest.Domain

	items := iq(c, "i1", servertest.Domain, `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if items.Attr("type") != "result" || !strings.Contains(items.Inner, `jid="`+host+`"`) {
		t.Fatalf("domain items: %v", items)
	}
	info := iq(c, "i2", host, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	var q struct {
		Identity struct {
			Category string `xml:"category,attr"`
			Type     string `xml:"type,attr"`
		} `xml:"identity"`
		Features []struct {
			Var string `xml:"var,attr"`
		} `xml:"feature"`
		Fields []struct {
			Var   string `xml:"var,attr"`
			Value string `xml:"value"`
		} `xml:"jabber:x:data x>field"`
	}
	if err := xml.Unmarshal([]byte(info.Inner), &q); err != nil || info.Attr("from") != host {
		t.Fatalf("host info %v: %v", info, err)
	}
	feats := map[string]bool{}
	for _, f := range q.Features {
		feats[f.Var] = true
	}
	form := map[string]string{}
	for _, f := range q.Fields {
		form[f.Var] = f.Value
	}
	if q.Identity.Category != "store" || q.Identity.Type != "file" || !feats[upload.NS] ||
		form["FORM_TYPE"] != upload.NS || form["max-file-size"] != "1000" {
		t.Fatalf("host info %+v", q)
	}

	body := strings.Repeat("z", 600)
	e := iq(c, "s1", host, `<request xmlns='urn:xmpp:http:upload:0' filename='../a b.txt' size='600' content-type='text/plain'/>`)
	var slot slotAnswer
	if err := xml.Unmarshal([]byte(e.Inner), &slot); err != nil || e.Attr("type") != "result" {
		t.Fatalf("slot %v: %v", e, err)
	}
	if !strings.HasPrefix(slot.Put.URL, hs.URL+fileupload.Path) || !strings.HasPrefix(slot.Get.URL, hs.URL+fileupload.Path) {
		t.Fatalf("slot URLs %+v", slot)
	}
	req, _ := http.NewRequest("PUT", slot.Put.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	for _, h := range slot.Put.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	resp, err = http.Get(slot.Get.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("GET: %d %q", resp.StatusCode, got)
	}

	for _, tc := range []struct{ id, req, cond, app string }{
		{"big", `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1001'/>`, "not-acceptable", `<file-too-large xmlns="urn:xmpp:http:upload:0"><max-file-size>1000</max-file-size></file-too-large>`},
		// 600 stored of 1500: 900 left.
		{"quota", `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='901'/>`, "not-acceptable", `<max-file-size>900</max-file-size>`},
		{"nosize", `<request xmlns='urn:xmpp:http:upload:0' filename='a'/>`, "bad-request", ""},
		{"negative", `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='-1'/>`, "bad-request", ""},
		{"noname", `<request xmlns='urn:xmpp:http:upload:0' size='1'/>`, "bad-request", ""},
		{"node", `<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>`, "item-not-found", ""},
	} {
		e := iq(c, tc.id, host, tc.req)
		if e.Attr("type") != "error" || !strings.Contains(e.Inner, "<"+tc.cond+" ") || !strings.Contains(e.Inner, tc.app) {
			t.Errorf("%s: %v", tc.id, e)
		}
	}
}
