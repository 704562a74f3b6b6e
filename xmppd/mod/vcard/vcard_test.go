package vcard

import (
	"bytes"
	"context"
	"dialtone/xmppd/mod/internal/modtest"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

type vcardResult struct {
	XMLName xml.Name `xml:"vcard-temp vCard"`
	FN      string   `xml:"FN"`
	Nick    string   `xml:"NICKNAME"`
	Photo   struct {
		Type string `xml:"TYPE"`
	} `xml:"PHOTO"`
	Children []modtest.Elem `xml:",any"`
}

func TestVCard(t *testing.T) {
	const stored = `<vCard xmlns="vcard-temp"><FN>Bob</FN></vCard>`
	big := `<vCard xmlns="vcard-temp"><NOTE>` + strings.Repeat("x", DefaultMax) + `</NOTE></vCard>`
	tests := []struct {
		name      string
		from, to  string
		typ       string
		inner     string
		cond      stanza.Condition
		wantFN    string // get: FN of the result
		wantStore string // set: alice's stored vCard ("-" for none)
	}{
		{name: "get own empty", from: aliceFull(), typ: "get", inner: `<vCard xmlns="vcard-temp"/>`},
		{name: "get other local", from: aliceFull(), to: bob + "@" + domain, typ: "get", inner: `<vCard xmlns="vcard-temp"/>`, wantFN: "Bob"},
		{name: "get number without account", from: aliceFull(), to: "+15559999999@" + domain, typ: "get", inner: `<vCard xmlns="vcard-temp"/>`},
		{name: "set own", from: aliceFull(), typ: "set",
			inner:     `<vCard xmlns="vcard-temp"><FN>Alice &amp; co</FN><NICKNAME>al</NICKNAME></vCard>`,
			wantStore: `<vCard xmlns="vcard-temp"><FN>Alice &amp; co</FN><NICKNAME>al</NICKNAME></vCard>`},
		{name: "set with prefixes", from: aliceFull(), typ: "set",
			inner:     `<v:vCard xmlns:v="vcard-temp" xmlns:x="urn:x"><v:FN x:a="1">A</v:FN><x:ext/><!-- c --></v:vCard>`,
			wantStore: `<vCard xmlns="vcard-temp"><FN xmlns:ns0="urn:x" ns0:a="1">A</FN><ext xmlns="urn:x"/></vCard>`},
		{name: "set other", from: aliceFull(), to: bob + "@" + domain, typ: "set", inner: `<vCard xmlns="vcard-temp"><FN>x</FN></vCard>`, cond: stanza.Forbidden, wantStore: "-"},
		{name: "set too large", from: aliceFull(), typ: "set", inner: big, cond: stanza.PolicyViolation, wantStore: "-"},
		{name: "set empty deletes", from: aliceFull(), typ: "set", inner: `<vCard xmlns="vcard-temp"/>`, wantStore: "-"},
		{name: "result type", from: aliceFull(), typ: "result", inner: `<vCard xmlns="vcard-temp"/>`, cond: stanza.BadRequest, wantStore: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := modtest.NewRouter(domain, alice+"@"+domain, bob+"@"+domain)
			st := modtest.NewPrivate()
			st.PutPrivate(context.Background(), bob, "vcard-temp", []byte(stored))
			v := New(r, st)
			b, err := v.handle(context.Background(), modtest.IQ(t, tt.from, tt.to, tt.typ, tt.inner))
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.typ == "get" && tt.cond == "" {
				var res vcardResult
				modtest.Unmarshal(t, b, &res)
				if res.FN != tt.wantFN {
					t.Errorf("FN %q, want %q in %s", res.FN, tt.wantFN, b)
				}
			}
			if tt.typ == "set" || tt.wantStore != "" {
				if b != nil {
					t.Errorf("set result %s", b)
				}
				got, ok := st.Get(alice, "vcard-temp")
				switch {
				case tt.wantStore == "-" && ok:
					t.Errorf("stored %s, want nothing", got)
				case tt.wantStore != "-" && string(got) != tt.wantStore:
					t.Errorf("stored %s\nwant     %s", got, tt.wantStore)
				}
			}
		})
	}
}

func TestVCardRoundTrip(t *testing.T) {
	r := modtest.NewRouter(domain, alice+"@"+domain)
	v := New(r, modtest.NewPrivate())
	ctx := context.Background()
	set := `<vCard xmlns="vcard-temp"><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>AAAA</BINVAL></PHOTO></vCard>`
	if _, err := v.handle(ctx, modtest.IQ(t, aliceFull(), "", "set", set)); err != nil {
		t.Fatal(err)
	}
	b, err := v.handle(ctx, modtest.IQ(t, bob+"@"+domain+"/x", alice+"@"+domain, "get", `<vCard xmlns="vcard-temp"/>`))
	if err != nil {
		t.Fatal(err)
	}
	var res vcardResult
	modtest.Unmarshal(t, b, &res)
	if res.FN != "Alice" || res.Photo.Type != "image/png" {
		t.Errorf("got %s", b)
	}
}

func TestVCardSetFullName(t *testing.T) {
	tests := []struct {
		name, stored, fn, want string
	}{
		{name: "none stored", fn: "Alice", want: `<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>`},
		{name: "replace", stored: `<vCard xmlns="vcard-temp"><NICKNAME>al</NICKNAME><FN>Old</FN><FN>Older</FN></vCard>`, fn: "A<b>",
			want: `<vCard xmlns="vcard-temp"><FN>A&lt;b&gt;</FN><NICKNAME>al</NICKNAME></vCard>`},
		{name: "keeps foreign FN", stored: `<vCard xmlns="vcard-temp"><FN xmlns="urn:x">x</FN></vCard>`, fn: "A",
			want: `<vCard xmlns="vcard-temp"><FN>A</FN><FN xmlns="urn:x">x</FN></vCard>`},
		{name: "remove", stored: `<vCard xmlns="vcard-temp"><FN>Old</FN><N><GIVEN>A</GIVEN></N></vCard>`, fn: "",
			want: `<vCard xmlns="vcard-temp"><N><GIVEN>A</GIVEN></N></vCard>`},
		{name: "remove last", stored: `<vCard xmlns="vcard-temp"><FN>Old</FN></vCard>`, fn: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := modtest.NewPrivate()
			if tt.stored != "" {
				st.PutPrivate(context.Background(), alice, "vcard-temp", []byte(tt.stored))
			}
			v := New(modtest.NewRouter(domain), st)
			if err := v.SetFullName(context.Background(), alice, tt.fn); err != nil {
				t.Fatal(err)
			}
			got, _ := st.Get(alice, "vcard-temp")
			if string(got) != tt.want {
				t.Errorf("stored %s\nwant     %s", got, tt.want)
			}
		})
	}
}

func TestVCardStoreError(t *testing.T) {
	st := modtest.NewPrivate()
	st.SetErr(errors.New("disk on fire"))
	v := New(modtest.NewRouter(domain), st)
	_, err := v.handle(context.Background(), modtest.IQ(t, aliceFull(), "", "get", `<vCard xmlns="vcard-temp"/>`))
	var se stanza.Error
	if err == nil || errors.As(err, &se) || !errors.Is(err, st.Err()) {
		t.Errorf("err %v, want the wrapped store error", err)
	}
}

// FuzzVCardSet feeds arbitrary (well-formed) client XML to the vCard set
// handler: it must not panic, and what it stores must be one vcard-temp
// vCard element that re-serialises to itself.
func FuzzVCardSet(f *testing.F) {
	for _, s := range []string{
		`<vCard xmlns="vcard-temp"/>`,
		`<vCard xmlns="vcard-temp"><FN>A</FN></vCard>`,
		`<v:vCard xmlns:v="vcard-temp" xmlns:x="urn:x"><v:FN x:a="&lt;1">A&amp;</v:FN><x:e xml:lang="en"/></v:vCard>`,
		`<vCard xmlns="vcard-temp"><a xmlns=""><b xmlns="vcard-temp">t</b></a><![CDATA[<x>]]></vCard>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, inner string) {
		// The core hands over only well-formed payloads.
		d := xml.NewDecoder(strings.NewReader(`<iq xmlns="jabber:client">` + inner + `</iq>`))
		var payload xml.Name
		for {
			tok, err := d.Token()
			if err != nil {
				if payload.Local == "" || !errors.Is(err, io.EOF) {
					t.Skip()
				}
				break
			}
			if se, ok := tok.(xml.StartElement); ok && payload.Local == "" && se.Name.Local != "iq" {
				payload = se.Name
			}
		}
		if payload != (xml.Name{Space: NS, Local: "vCard"}) {
			t.Skip()
		}
		st := modtest.NewPrivate()
		v := New(modtest.NewRouter(domain), st)
		v.MaxSize = 4096
		_, err := v.handle(context.Background(), modtest.IQ(t, aliceFull(), "", "set", inner))
		got, ok := st.Get(alice, "vcard-temp")
		if err != nil || !ok {
			return
		}
		if len(got) > v.MaxSize {
			t.Fatalf("stored %d bytes over the limit", len(got))
		}
		var e modtest.Elem
		modtest.Unmarshal(t, got, &e)
		if e.XMLName != (xml.Name{Space: NS, Local: "vCard"}) {
			t.Fatalf("stored %s: root %v", got, e.XMLName)
		}
		if again := modtest.Canonical(t, got); !bytes.Equal([]byte(again), got) {
			t.Fatalf("not canonical:\n%s\n%s", got, again)
		}
	})
}
