package xmppd_test

import (
	"context"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
)

// ownGoroutines are the goroutines running code of the xmppd packages
// (not of this test), each as its stack.
func ownGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if xmppdFrame.MatchString(g) {
			own = append(own, g)
		}
	}
	return own
}

var xmppdFrame = regexp.MustCompile(`(?m)^dialtone/xmppd(/[a-z0-9/]+)?\.`)

// Every goroutine the server starts has an owner that stops it: once the
// federation and the server are shut down, none of them is left, after
// every kind of work was started — c2s and WebSocket sessions, links both
// ways with dialback, a stanza waiting for a link, offline storage.
func TestShutdownStopsEveryGoroutine(t *testing.T) {
	noGoroutines(t, "of earlier tests")
	a, b := federatedPair(t, selfSigned(t, "a.test"), selfSigned(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.InsecureDomains = []string{"a.test", "b.test"}
		c.DisableBidi = true
	})
	ca := a.login(t, "+821012345678", "phone")
	cb := b.login(t, "+821087654321", "laptop")
	chat(t, ca, cb, "hello")
	chat(t, cb, ca, "hi")
	ca.Send(`<message to='x@unreachable.invalid'><body>waits for a link</body></message>`)
	ca.Send(`<message to='+821055555555@a.test'><body>for later</body></message>`)

	ca.Send(`<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>`)
	ca.Expect("pong", func(e xmpptest.Elem) bool { return e.Attr("id") == "sync" })
	ts := startServer(t)
	url, hc := startWS(t, ts, false)
	ws := dialWS(t, url, hc)
	ws.login(alice, ts.account(t, alice), "web")
	// A client reads on, and so answers the closing handshake.
	go func() {
		for {
			if _, err := ws.frame(); err != nil {
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, f := range []*xmppd.Federation{a.fed, b.fed} {
		if err := f.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Each waits a moment for its clients' end of stream: together.
	var wg sync.WaitGroup
	for _, s := range []*xmppd.Server{a.Server, b.Server, ts.Server} {
		wg.Go(func() {
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("%v\n%s", err, strings.Join(ownGoroutines(), "\n\n"))
			}
		})
	}
	wg.Wait()
	noGoroutines(t, "outlive the shutdown")
}

// noGoroutines fails t if goroutines of xmppd run for more than the moment
// one that signalled its owner may take to return.
func noGoroutines(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for left := ownGoroutines(); len(left) > 0; left = ownGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %s:\n%s", len(left), what, strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
