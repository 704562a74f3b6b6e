package xmppd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
	"dialtone/xmppd/router"
)

// QuerySession sends the session an iq from the server and returns its
// answer (a result or an error), which goes nowhere else; a session that
// ends first makes it return ErrSessionClosed.
func TestQuerySession(t *testing.T) {
	ts := startServer(t)
	pa := ts.account(t, alice)
	a := xmpptest.Login(t, ts.addr, alice, pa, "q")
	full := mustJID(a.JID)
	type answer struct {
		st  *router.Stanza
		err error
	}
	ask := func() chan answer {
		c := make(chan answer, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := ts.QuerySession(ctx, full, "get", []byte(`<ping xmlns="urn:xmpp:ping"/>`))
			c <- answer{st, err}
		}()
		return c
	}
	isQuery := func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("from") == "localhost" && e.Attr("type") == "get" && strings.Contains(e.Inner, "urn:xmpp:ping")
	}

	// answered with a result, 'to' the server
	got := ask()
	q := a.Expect("the query", isQuery)
	a.Send(`<iq type='result' id='` + q.Attr("id") + `' to='localhost'/>`)
	if r := <-got; r.err != nil || r.st.Type != "result" || r.st.ID != q.Attr("id") {
		t.Fatalf("QuerySession: %+v %v", r.st, r.err)
	}
	// answered with an error, without 'to': an answer all the same
	got = ask()
	q = a.Expect("the query", isQuery)
	a.Send(`<iq type='error' id='` + q.Attr("id") + `'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	if r := <-got; r.err != nil || r.st.Type != "error" {
		t.Fatalf("QuerySession answered with an error: %+v %v", r.st, r.err)
	}
	a.Sync() // the answers went nowhere else: nothing came back

	// the session goes away unanswered
	got = ask()
	a.Expect("the query", isQuery)
	a.Send(`</stream:stream>`)
	if r := <-got; !errors.Is(r.err, xmppd.ErrSessionClosed) {
		t.Fatalf("QuerySession on a session that ended: %+v %v, want ErrSessionClosed", r.st, r.err)
	}
	if _, err := ts.QuerySession(context.Background(), full, "get", nil); !errors.Is(err, xmppd.ErrSessionClosed) {
		t.Fatalf("QuerySession with no session: %v", err)
	}
}
