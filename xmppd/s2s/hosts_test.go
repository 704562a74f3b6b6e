package s2s

import (
	"encoding/xml"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
)

// hostedFederation is testFederation with the component host
// groups.a.test added by a module, as the muc module does.
func hostedFederation(t *testing.T) *Federation {
	t.Helper()
	f := testFederation(t)
	err := f.srv.Router.Load(router.ModuleFunc(func(h *router.Hooks) error {
		h.AddHost("groups.a.test")
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pipeLink is an incoming link from b.test to a.test reading from a pipe
// (plaintext allowed, so no TLS): the test writes the peer's side to peer
// and reads the server's from dec, past its header. The link's reading
// runs until the test ends; its result is on done.
func pipeLink(t *testing.T, f *Federation) (s *link, peer net.Conn, dec *xml.Decoder, done <-chan error) {
	t.Helper()
	f.cfg.AllowPlaintext = true
	a, b := net.Pipe()
	s = f.newLink(a, false)
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		err := s.acceptHeader()
		if err == nil {
			err = s.readLoop()
		}
		ch <- err
	}()
	t.Cleanup(func() {
		a.Close()
		b.Close()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("the read loop did not end")
		}
		s.closeWith("", "")
		s.st.Finish()
	})
	b.SetDeadline(time.Now().Add(5 * time.Second))
	write(t, b, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='`+nsDialback+`' from='b.test' to='a.test' version='1.0'>`)
	dec = xml.NewDecoder(b)
	for i := 0; ; i++ {
		tok, err := dec.Token()
		if err != nil || i > 10 {
			t.Fatalf("no stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	next(t, dec, "features") // read: the pipe has no buffer
	return s, b, dec, ch
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// next returns the next top-level element named local the server wrote.
func next(t *testing.T, dec *xml.Decoder, local string) xml.StartElement {
	t.Helper()
	for i := 0; i < 20; i++ {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if err := dec.Skip(); err != nil {
				t.Fatal(err)
			}
			if se.Name.Local == local {
				return se
			}
		}
	}
	t.Fatalf("no <%s/>", local)
	return xml.StartElement{}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

func TestHosted(t *testing.T) {
	f := hostedFederation(t)
	for d, want := range map[string]bool{"a.test": true, "groups.a.test": true, "api.a.test": false, "b.test": false, "": false} {
		if got := f.hosted(d); got != want {
			t.Errorf("hosted(%q) = %v, want %v", d, got, want)
		}
	}
}

// As the authoritative server, the federation answers <db:verify/> for
// each domain it serves, with that domain's key and from that domain; a
// key is bound to the domain it was made for.
func TestVerifyPerHost(t *testing.T) {
	f := hostedFederation(t)
	_, peer, dec, _ := pipeLink(t, f)
	groupsKey := f.dialbackKey("b.test", "groups.a.test", "id1")
	for _, tc := range []struct {
		name, to, key, wantType, wantFrom string
	}{
		{"the host's key", "groups.a.test", groupsKey, "valid", "groups.a.test"},
		{"the domain's key", "a.test", f.dialbackKey("b.test", "a.test", "id1"), "valid", "a.test"},
		{"the host's key for the domain", "a.test", groupsKey, "invalid", "a.test"},
		{"a domain not served here", "elsewhere.test", groupsKey, "invalid", "a.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(t, peer, `<db:verify xmlns:db='`+nsDialback+`' from='b.test' to='`+tc.to+`' id='id1'>`+tc.key+`</db:verify>`)
			se := next(t, dec, "verify")
			if se.Name.Local != "verify" || attr(se, "type") != tc.wantType || attr(se, "from") != tc.wantFrom || attr(se, "to") != "b.test" || attr(se, "id") != "id1" {
				t.Fatalf("answer %v, want type %s from %s", se, tc.wantType, tc.wantFrom)
			}
		})
	}
}

// A stanza is accepted only for a (from, to) pair the peer authenticated:
// authenticated to a.test, a stanza to groups.a.test ends the stream.
func TestStanzaNeedsItsPair(t *testing.T) {
	f := hostedFederation(t)
	s, peer, _, done := pipeLink(t, f)
	s.authenticate("a.test", "b.test", "dialback")
	if !s.authedPair("a.test", "b.test") || s.authedPair("groups.a.test", "b.test") || !s.authedFrom("b.test") {
		t.Fatalf("pairs after authenticating (a.test, b.test): %v", s.authed)
	}
	write(t, peer, `<iq xmlns='jabber:server' type='get' id='1' from='u@b.test/r' to='groups.a.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	select {
	case err := <-done:
		var se *stream.Error
		if !errors.As(err, &se) || se.Condition != "invalid-from" {
			t.Fatalf("read loop ended with %v, want invalid-from", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stanza for an unauthenticated pair was taken")
	}
}
