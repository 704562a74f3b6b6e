package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
)

// TestSlixmppReceiverAfterNotWellFormed: messages that are not
// namespace-well-formed, sent to an offline receiver between good ones,
// end the sender's stream and are never stored, so slixmpp (expat through
// ElementTree) logs in as the receiver and gets every good message. Before
// they were stored, and slixmpp's parser failed on the first at login:
// the good messages after it were never shown. A prefix declared only on
// the sender's stream header is carried onto the stored stanza.
func TestSlixmppReceiverAfterNotWellFormed(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	xmppd, xmppctl := build(t, t.TempDir())
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			wh := newWebhook(t)
			s := newServer(t, xmppd, xmppctl, storeURL(t, store), wh, nil)
			s.start()
			pwA := s.account(numberA)
			pwB := s.account(numberB)
			s.activate(numberB, pwB)

			to := numberB + "@" + domain
			bad := []string{
				`<message to='%s' type='chat'><body>dup</body><x xmlns='urn:x' a='1' a='2'/></message>`,
				`<message to='%s' type='chat' to='%[1]s'><body>dup to</body></message>`,
				`<message to='%s' type='chat'><body>prefix</body><p:x/></message>`,
				`<message to='%s' type='chat'><body>xml</body><x xmlns:xml='urn:x'/></message>`,
				`<message to='%s' type='chat'><body>&#xD800;</body></message>`,
				`<message to='%s' type='chat'><body>brace</body><x xmlns='urn:}'/></message>`,
			}
			var good []string
			sendGood := func(c *xmpptest.Client, extra string) {
				b := body(len(good)+1, "")
				good = append(good, b)
				c.Send(`<message to='` + to + `' type='chat'><body>` + b + `</body>` + extra + `</message>`)
				c.Sync()
			}
			for _, st := range bad {
				a := xmpptest.Login(t, s.addr(), numberA, pwA, "a")
				sendGood(a, "")
				a.Send(fmt.Sprintf(st, to))
				if cond := a.ExpectStreamError(); cond != "not-well-formed" {
					t.Fatalf("%s: stream error %q, want not-well-formed", st, cond)
				}
			}
			// A stream header that declares a prefix the stanzas use.
			h := loginDeclaring(t, s.addr(), numberA, pwA, "xmlns:h='urn:h'")
			sendGood(h, `<h:x/>`)
			h.Conn.Close()
			if got := s.accountShow(numberB)["stored_messages"]; got != fmt.Sprint(len(good)) {
				t.Fatalf("stored_messages %s, want %d (the good ones)", got, len(good))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			script := exec.CommandContext(ctx, python, "slixmpp_receive.py",
				"--host", "127.0.0.1", "--port", s.c2s, "--domain", domain,
				"--account", numberB, pwB, fmt.Sprint(len(good)), "--timeout", "50")
			var stdout, stderr bytes.Buffer
			script.Stdout, script.Stderr = &stdout, &stderr
			runErr := script.Run()
			var res receiveResult
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("script output is not JSON (%v); exit: %v; stderr:\n%s", err, runErr, stderr.String())
			}
			if runErr != nil || !res.OK || len(res.Accounts) != 1 {
				t.Fatalf("slixmpp as the receiver failed: %s (exit: %v)\n%s", res.Error, runErr, stdout.String())
			}
			var bodies []string
			for _, m := range res.Accounts[0].Messages {
				bodies = append(bodies, m.Body)
			}
			if strings.Join(bodies, "\x00") != strings.Join(good, "\x00") {
				t.Fatalf("slixmpp got\n%q\nwant\n%q", bodies, good)
			}
			s.stop()
		})
	}
}

// loginDeclaring logs in over STARTTLS with decl added to every stream
// header it sends.
func loginDeclaring(t *testing.T, addr, user, pass, decl string) *xmpptest.Client {
	t.Helper()
	c := xmpptest.Dial(t, addr)
	c.HeaderAttrs = decl
	c.Login(user, pass, "h")
	return c
}
