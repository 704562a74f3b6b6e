package s2s

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// byteConn is a net.Conn that reads fixed bytes and writes nowhere.
type byteConn struct {
	net.Conn
	r *bytes.Reader
}

func (c byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c byteConn) SetDeadline(time.Time) error      { return nil }
func (c byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c byteConn) SetWriteDeadline(time.Time) error { return nil }
func (c byteConn) Close() error                     { return nil }
func (c byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// noAccounts: every number is latent.
type noAccounts struct{}

func (noAccounts) Account(context.Context, auth.Number) (auth.Account, error) {
	return auth.Account{}, auth.ErrNotFound
}

// testFederation is a federation of a.test that never serves.
func testFederation(t testing.TB) *Federation {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{Domain: "a.test", Parser: parser, Accounts: noAccounts{}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Server{
		Router:        r,
		TLS:           &tls.Config{},
		Pending:       stream.NewPendingTable(10, 10, stream.NewMetrics(nil).Pending),
		Stream:        &stream.Config{WriteTimeout: time.Second, QueueSize: 16, QueueBytes: 1 << 16, Metrics: stream.NewMetrics(nil)},
		MaxStanzaSize: 1 << 16,
		AuthTimeout:   time.Second,
		Log:           slog.New(slog.DiscardHandler),
	}, Config{DialbackSecret: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// FuzzHeader reads a peer's stream header as an incoming and as an
// outgoing link does: whatever comes, no panic; what is accepted names
// the peer as a bare domain (incoming) or carries a stream id (outgoing).
func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='b.test' to='a.test' version='1.0' id='x1'>`,
		`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='u@b.test' to='a.test' version='1.0'>`,
		`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='b.test/r' to='elsewhere.test' version='1.0'>`,
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`,
		`<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' version='2.0' id=''>`,
		`<?xml version='1.1'?><stream:stream>`,
		`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='&#x1F600;.test' version='1.0'>`,
	} {
		f.Add([]byte(s))
	}
	fed := testFederation(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, outgoing := range []bool{false, true} {
			l := fed.newLink(byteConn{r: bytes.NewReader(data)}, outgoing)
			if outgoing {
				l.peer = "b.test"
			}
			err := l.readHeader()
			l.st.Close("", "")
			if err != nil {
				continue
			}
			switch {
			case outgoing && l.id == "":
				t.Fatalf("accepted an outgoing stream without an id: %q", data)
			case !outgoing && l.peer != "":
				j, err := jid.Parse(l.peer)
				if err != nil || j.Localpart() != "" || j.Resourcepart() != "" || j.Domainpart() != l.peer {
					t.Fatalf("accepted %q as the peer's domain from %q", l.peer, data)
				}
			}
		}
	})
}

// FuzzDialback reads dialback elements as a link does: no panic; a
// request is accepted only from a bare domain with a key that is text;
// the answers the server writes with what a peer sent parse back to the
// same values (escaping).
func FuzzDialback(f *testing.F) {
	for _, s := range []string{
		`<db:result from='b.test' to='a.test'>0123abcd</db:result>`,
		`<db:result from='u@b.test' to='a.test'>k</db:result>`,
		`<db:result from='b.test' to='a.test'><x/></db:result>`,
		`<db:verify from='b.test' to='a.test' id='x&quot;1'>  key  </db:verify>`,
		`<db:verify from='b.test' to='a.test' id='1' type='valid'/>`,
		`<db:result xmlns:db='jabber:server:dialback' from='b.test&lt;' to='a.test'>&lt;</db:result>`,
	} {
		f.Add([]byte(s))
	}
	fed := testFederation(f)
	header := `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='b.test' to='a.test' version='1.0'>`
	f.Fuzz(func(t *testing.T, data []byte) {
		r := wire.NewReader(byteConn{r: bytes.NewReader(append([]byte(header), data...))}, 1<<16)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			el, err := r.ReadElement()
			if err != nil {
				return
			}
			if el.Name.Space != nsDialback {
				continue
			}
			d := parseDialback(el)
			if domain, ok := d.requestDomain(); ok {
				j, err := jid.Parse(domain)
				if err != nil || j.Localpart() != "" || j.Resourcepart() != "" || d.key == "" || strings.ContainsAny(d.key, "<") {
					t.Fatalf("accepted a request from %q with key %q", domain, d.key)
				}
			}
			fed.checkDialbackKey(d.key, d.from, fed.domain, d.id) // never panics
			// Our answer, written with what the peer sent, reads back the same.
			back := wire.NewReader(byteConn{r: bytes.NewReader(append([]byte(header), verifyAnswer(fed.domain, d.from, d.id, "invalid")...))}, 1<<16)
			back.ReadHeader()
			again, err := back.ReadElement()
			if err != nil {
				t.Fatalf("our answer to %q does not read: %v", data, err)
			}
			if a := parseDialback(again); a.to != d.from || a.id != d.id || a.typ != "invalid" {
				t.Fatalf("our answer to %+v reads back as %+v", d, a)
			}
		}
	})
}
