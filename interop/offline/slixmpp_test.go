package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

const python = testbin.Python

var requireSlixmpp = testbin.RequireSlixmpp

// receiveResult is what slixmpp_receive.py prints.
type receiveResult struct {
	OK       bool   `json:"ok"`
	Slixmpp  string `json:"slixmpp"`
	Error    string `json:"error"`
	Accounts []struct {
		JID      string `json:"jid"`
		Bound    string `json:"bound"`
		Messages []struct {
			From  string `json:"from"`
			To    string `json:"to"`
			Type  string `json:"type"`
			Body  string `json:"body"`
			Delay *struct {
				From         string `json:"from"`
				Stamp        string `json:"stamp"`
				SlixmppFrom  string `json:"slixmpp_from"`
				SlixmppStamp string `json:"slixmpp_stamp"`
			} `json:"delay"`
		} `json:"messages"`
	} `json:"accounts"`
}

// TestSlixmppReceiver: messages are stored for B (an account, offline) and
// for C (a number that never used the service); slixmpp logs in as B, and
// as C with the password C's notice SMS carried, and each gets its
// messages oldest first, each once, with a XEP-0203 delay from the domain.
func TestSlixmppReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	xmppd, xmppctl := build(t, t.TempDir())
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			slixmppReceiver(t, xmppd, xmppctl, storeURL(t, store))
		})
	}
}

func slixmppReceiver(t *testing.T, xmppd, xmppctl, dbURL string) {
	wh := newWebhook(t)
	s := newServer(t, xmppd, xmppctl, dbURL, wh, nil)
	s.start()
	pwA := s.account(numberA)
	pwB := s.account(numberB)
	s.activate(numberB, pwB)

	// Bodies that a client must get back exactly: markup characters,
	// non-ASCII text, a newline.
	bodiesB := []string{
		body(1, ""),
		body(2, ": <b>not markup</b> & \"quotes\" 'too'"),
		body(3, ": 안녕하세요, naïve café ✓"),
		body(4, ":\nsecond line"),
		body(5, ", the last"),
	}
	bodiesC := []string{body(6, ", to a number new here"), body(7, ", and another")}

	storing := time.Now()
	a := xmpptest.Login(t, s.addr(), numberA, pwA, "slixmpp-test")
	send := func(to, b string) {
		var esc bytes.Buffer
		xml.EscapeText(&esc, []byte(b))
		a.Send(fmt.Sprintf(`<message to='%s@%s' type='chat'><body>%s</body></message>`, to, domain, esc.String()))
	}
	for _, b := range bodiesB {
		send(numberB, b)
	}
	for _, b := range bodiesC {
		send(numberC, b)
	}
	a.Sync() // everything before it was handled: stored
	stored := time.Now()
	a.Conn.Close()
	for number, want := range map[string]int{numberB: len(bodiesB), numberC: len(bodiesC)} {
		if got := s.accountShow(number)["stored_messages"]; got != fmt.Sprint(want) {
			t.Fatalf("xmppctl account show %s: stored_messages %s, want %d", number, got, want)
		}
	}

	// C learns its password from its first notice, within 10 s (SPEC.md).
	var passwordC string
	if !waitFor(10*time.Second-time.Since(stored), func() bool {
		for _, n := range wh.notices(t, numberC) {
			if n.Password != "" {
				passwordC = n.Password
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no notice with a password reached C within 10 s of the messages being stored; SMS so far: %+v", wh.all())
	}
	ns := wh.notices(t, numberC)
	if want := fmt.Sprintf(`New message from %s on %s: "%s". Log in with your phone number and password %s, or tap http://`,
		numberA, domain, bodiesC[0], passwordC); !strings.HasPrefix(ns[0].Text, want) {
		t.Errorf("C's first notice:\n got %q\nwant %q", ns[0].Text, want)
	}
	// B, an active account, is told of its first message, without a password.
	if !waitFor(10*time.Second-time.Since(stored), func() bool { return len(wh.notices(t, numberB)) > 0 }) {
		t.Errorf("no notice reached B within 10 s of the messages being stored")
	} else if got, want := wh.notices(t, numberB)[0].Text, fmt.Sprintf(`New message from %s on %s: "%s".`, numberA, domain, bodiesB[0]); got != want {
		t.Errorf("B's first notice:\n got %q\nwant %q", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := exec.CommandContext(ctx, python, "slixmpp_receive.py",
		"--host", "127.0.0.1", "--port", s.c2s, "--domain", domain,
		"--account", numberB, pwB, fmt.Sprint(len(bodiesB)),
		"--account", numberC, passwordC, fmt.Sprint(len(bodiesC)),
		"--timeout", "50", "--debug")
	var stdout, stderr bytes.Buffer
	script.Stdout, script.Stderr = &stdout, &stderr
	runErr := script.Run()
	defer func() {
		if t.Failed() {
			t.Logf("slixmpp_receive.py:\n%s", stdout.String())
			b := stderr.Bytes()
			if len(b) > 30000 {
				b = b[len(b)-30000:]
			}
			t.Logf("slixmpp_receive.py stderr (end):\n%s", b)
		}
	}()
	var res receiveResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON (%v); exit: %v", err, runErr)
	}
	if runErr != nil || !res.OK {
		t.Fatalf("slixmpp as the receiver failed: %s (exit: %v)", res.Error, runErr)
	}
	if len(res.Accounts) != 2 {
		t.Fatalf("%d accounts in the script's result, want 2", len(res.Accounts))
	}
	for i, want := range []struct {
		number string
		bodies []string
	}{{numberB, bodiesB}, {numberC, bodiesC}} {
		acc := res.Accounts[i]
		msgs := acc.Messages
		var bodies []string
		for _, m := range msgs {
			bodies = append(bodies, m.Body)
		}
		if strings.Join(bodies, "\x00") != strings.Join(want.bodies, "\x00") {
			t.Errorf("%s got, in this order:\n%q\nwant, oldest first, each once:\n%q", want.number, bodies, want.bodies)
		}
		var last time.Time
		for _, m := range msgs {
			if bare(m.From) != numberA+"@"+domain || bare(m.To) != want.number+"@"+domain || m.Type != "chat" {
				t.Errorf("%s: %q from %q to %q type %q; want from %s, to %s, chat", want.number, m.Body, m.From, m.To, m.Type, numberA, want.number)
			}
			if m.Delay == nil {
				t.Errorf("%s: %q has no XEP-0203 delay", want.number, m.Body)
				continue
			}
			if m.Delay.From != domain || m.Delay.SlixmppFrom != domain {
				t.Errorf("%s: %q: delay from %q (slixmpp reads %q), want %q", want.number, m.Body, m.Delay.From, m.Delay.SlixmppFrom, domain)
			}
			stamp, err := time.Parse(time.RFC3339Nano, m.Delay.Stamp)
			if err != nil {
				t.Errorf("%s: %q: delay stamp %q: %v", want.number, m.Body, m.Delay.Stamp, err)
				continue
			}
			if !strings.HasSuffix(m.Delay.Stamp, "Z") {
				t.Errorf("%s: delay stamp %q is not UTC (XEP-0082)", want.number, m.Delay.Stamp)
			}
			if sli, err := time.Parse(time.RFC3339Nano, m.Delay.SlixmppStamp); err != nil || !sli.Equal(stamp) {
				t.Errorf("%s: slixmpp reads the stamp %q as %q (%v)", want.number, m.Delay.Stamp, m.Delay.SlixmppStamp, err)
			}
			if stamp.Before(storing.Add(-time.Second)) || stamp.After(stored.Add(time.Second)) {
				t.Errorf("%s: %q: stamp %s is not when it was stored (%s … %s)", want.number, m.Body, m.Delay.Stamp,
					storing.UTC().Format(time.RFC3339Nano), stored.UTC().Format(time.RFC3339Nano))
			}
			if stamp.Before(last) {
				t.Errorf("%s: %q: stamp %s before the previous one's", want.number, m.Body, m.Delay.Stamp)
			}
			last = stamp
		}
	}
	// Delivered, so no longer stored; C logged in, so it is active.
	for _, number := range []string{numberB, numberC} {
		show := s.accountShow(number)
		if show["stored_messages"] != "0" || show["state"] != "active" {
			t.Errorf("after slixmpp logged in as %s: state %q, stored_messages %q; want active, 0", number, show["state"], show["stored_messages"])
		}
	}
	s.stop()
	wh.check(t)
	t.Logf("slixmpp %s received %d messages as B and %d as C (logged in with the password of its notice), oldest first, with delay stamps from %s",
		res.Slixmpp, len(res.Accounts[0].Messages), len(res.Accounts[1].Messages), domain)
}
