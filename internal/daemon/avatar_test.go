package daemon_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"image"
	"image/png"
	"strconv"
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
)

const (
	nsAvatarData = "urn:xmpp:avatar:data"
	nsAvatarMeta = "urn:xmpp:avatar:metadata"
	nsVCardUpd   = "vcard-temp:x:update"
)

// pngOf is a w×h PNG image with its SHA-1 (hex).
func pngOf(t *testing.T, w, h int) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(b.Bytes())
	return b.Bytes(), hex.EncodeToString(sum[:])
}

// photoHash is the vcard-temp:x:update photo of a presence; ok is false
// when it has no such element.
func photoHash(t *testing.T, e xmpptest.Elem) (hash string, ok bool) {
	t.Helper()
	var p struct {
		X []struct {
			Photo *string `xml:"photo"`
		} `xml:"vcard-temp:x:update x"`
	}
	if err := xml.Unmarshal([]byte("<p>"+e.Inner+"</p>"), &p); err != nil {
		t.Fatalf("presence %v: %v", e, err)
	}
	if len(p.X) > 1 {
		t.Errorf("%d vcard-temp:x:update elements in %v", len(p.X), e)
	}
	if len(p.X) == 0 || p.X[0].Photo == nil {
		return "", false
	}
	return *p.X[0].Photo, true
}

// XEP-0398 and XEP-0153: an avatar published on PEP becomes the vCard
// photo, a vCard photo is published on PEP, and the account's available
// presence carries the hash unless the client put its own photo there.
func testAvatar(t *testing.T, s *daemonUnderTest) {
	a, b, stranger := s.newUser(t), s.newUser(t), s.newUser(t)
	a0, b0 := s.online(t, a, "setup"), s.online(t, b, "setup")
	befriend(t, a0, b0)
	b1 := s.capsOnline(t, b, "phone", nsAvatarMeta)
	c := s.online(t, stranger, "c")

	info, _ := iq(a0, "get", a.bare(), `<query xmlns='`+nsDiscoInf+`'/>`)
	if !strings.Contains(info.Inner, "urn:xmpp:pep-vcard-conversion:0") {
		t.Errorf("account disco#info lacks the conversion: %v", info)
	}

	// PEP to vCard.
	img, id := pngOf(t, 3, 2)
	mustResult(t, publish(a0, nsAvatarData, id, `<data xmlns='`+nsAvatarData+`'>`+base64.StdEncoding.EncodeToString(img)+`</data>`, ""))
	mustResult(t, publish(a0, nsAvatarMeta, id, `<metadata xmlns='`+nsAvatarMeta+`'><info id='`+id+`' bytes='`+strconv.Itoa(len(img))+`' type='image/png' width='3' height='2'/><info id='ext' url='https://example.com/a.png' type='image/png' bytes='1'/></metadata>`, ""))
	until(b1, "metadata notification", isEvent(a.bare(), id))
	r, _ := iq(c, "get", a.bare(), `<vCard xmlns='vcard-temp'/>`)
	var card struct {
		Type   string `xml:"PHOTO>TYPE"`
		BinVal string `xml:"PHOTO>BINVAL"`
	}
	if err := xml.Unmarshal([]byte(r.Inner), &card); err != nil {
		t.Fatalf("vCard %v: %v", r, err)
	}
	if got, _ := base64.StdEncoding.DecodeString(card.BinVal); card.Type != "image/png" || !bytes.Equal(got, img) {
		t.Errorf("vCard photo after a PEP avatar: %q %q", card.Type, card.BinVal)
	}

	// XEP-0153 hash in presence, broadcast and directed.
	drain(b0)
	a0.Send(`<presence><show>away</show></presence>`)
	p := b0.Expect("a's presence", isPresence("", a.num+"@"+domain+"/setup"))
	if h, _ := photoHash(t, p); h != id {
		t.Errorf("presence hash %q, want %q: %v", h, id, p)
	}
	a0.Send(`<presence to='` + stranger.bare() + `'/>`)
	if h, _ := photoHash(t, c.Expect("directed presence", isPresence("", a.num+"@"+domain+"/setup"))); h != id {
		t.Errorf("directed presence hash %q, want %q", h, id)
	}
	// The client's own <photo/> stays; an <x/> without one is filled in.
	a0.Send(`<presence><x xmlns='` + nsVCardUpd + `'><photo/></x></presence>`)
	if h, ok := photoHash(t, b0.Expect("a's presence", isPresence("", a.num+"@"+domain+"/setup"))); !ok || h != "" {
		t.Errorf("the client's empty photo became %q (%v)", h, ok)
	}
	a0.Send(`<presence><status>hi</status><x xmlns='` + nsVCardUpd + `'/><priority>1</priority></presence>`)
	p = b0.Expect("a's presence", isPresence("", a.num+"@"+domain+"/setup"))
	if h, _ := photoHash(t, p); h != id || !strings.Contains(p.Inner, "<status>hi</status>") || !strings.Contains(p.Inner, "<priority>1</priority>") {
		t.Errorf("an <x/> without photo: %v", p)
	}

	// vCard to PEP: data and metadata published, the contact notified.
	img2, id2 := pngOf(t, 5, 4)
	r, _ = iq(a0, "set", "", `<vCard xmlns='vcard-temp'><FN>A</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>`+base64.StdEncoding.EncodeToString(img2)+`</BINVAL></PHOTO></vCard>`)
	mustResult(t, r)
	ev, _ := until(b1, "metadata notification of the vCard photo", isEvent(a.bare(), id2))
	for _, want := range []string{`id="` + id2 + `"`, `bytes="` + strconv.Itoa(len(img2)) + `"`, `type="image/png"`, `width="5"`, `height="4"`} {
		if !strings.Contains(ev.Inner, want) {
			t.Errorf("metadata lacks %s: %v", want, ev)
		}
	}
	// The data node a made keeps its (presence) access: its contact reads it.
	got := items(b1, a.bare(), nsAvatarData, "")
	mustResult(t, got)
	if !strings.Contains(got.Inner, `id="`+id2+`"`) || !strings.Contains(got.Inner, base64.StdEncoding.EncodeToString(img2)) {
		t.Errorf("avatar data from the vCard: %v", got)
	}
	a0.Send(`<presence/>`)
	if h, _ := photoHash(t, b0.Expect("a's presence", isPresence("", a.num+"@"+domain+"/setup"))); h != id2 {
		t.Errorf("presence hash after the vCard photo %q, want %q", h, id2)
	}

	// A data item that does not match its id is not converted.
	mustResult(t, publish(a0, nsAvatarData, "0000", `<data xmlns='`+nsAvatarData+`'>`+base64.StdEncoding.EncodeToString(img)+`</data>`, ""))
	mustResult(t, publish(a0, nsAvatarMeta, "0000", `<metadata xmlns='`+nsAvatarMeta+`'><info id='0000' bytes='1' type='image/png'/></metadata>`, ""))
	r, _ = iq(c, "get", a.bare(), `<vCard xmlns='vcard-temp'/>`)
	if !strings.Contains(r.Inner, base64.StdEncoding.EncodeToString(img2)) {
		t.Errorf("a mismatched avatar replaced the vCard photo: %v", r)
	}

	// An account whose first avatar is a vCard photo gets open nodes: the
	// vCard shows the photo to anyone already.
	d := s.newUser(t)
	d0 := s.login(t, d, "x")
	r, _ = iq(d0, "set", "", `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>`+base64.StdEncoding.EncodeToString(img)+`</BINVAL></PHOTO></vCard>`)
	mustResult(t, r)
	if got := items(c, d.bare(), nsAvatarMeta, ""); got.Attr("type") != "result" || !strings.Contains(got.Inner, id) {
		t.Errorf("a stranger reads the converted metadata: %v", got)
	}
}
