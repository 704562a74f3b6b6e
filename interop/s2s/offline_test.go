package s2s

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"dialtone/internal/testbin"
)

// The webhook SMS gateway of xmppd (SPEC.md "SMS gateway webhook").
type smsReceiver = testbin.SMSReceiver

var newSMSReceiver = testbin.NewSMSReceiver

// noticeTimeout: SPEC.md, the first message is notified within 10 seconds.
const noticeTimeout = 10 * time.Second

// offlineScript runs testdata/s2s_offline.py and decodes its JSON into res.
func offlineScript(t *testing.T, res any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{filepath.Join(testdata(t), "s2s_offline.py")}, append(args, "--debug")...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var ok struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &ok); err != nil || runErr != nil || !ok.OK {
		e := stderr.Bytes()
		if len(e) > 20000 {
			e = e[len(e)-20000:]
		}
		t.Fatalf("s2s_offline.py %s: %s (exit %v)\nstdout: %s\nslixmpp log (end):\n%s", args[0], ok.Error, runErr, stdout.String(), e)
	}
	if err := json.Unmarshal(stdout.Bytes(), res); err != nil {
		t.Fatal(err)
	}
}

type sentMessage struct {
	ID, To, Body string
}

type errorStanza struct {
	ID, From, To, Type, Condition, Text string
}

// sendFrom has the peer's user u send the messages (to, body), in order,
// and returns what it sent and the errors that came back within linger.
// With errorsTo the wait ends once errors for those addresses are in.
func sendFrom(t *testing.T, u user, msgs [][2]string, linger time.Duration, errorsTo ...string) ([]sentMessage, []errorStanza) {
	t.Helper()
	args := []string{"send", "--host", u.host, "--port", strconv.Itoa(u.port), "--jid", u.jid, "--password", u.password,
		"--linger", strconv.FormatFloat(linger.Seconds(), 'f', -1, 64), "--step-timeout", "20"}
	for _, m := range msgs {
		args = append(args, "--message", m[0]+"="+m[1])
	}
	for _, to := range errorsTo {
		args = append(args, "--expect-error-to", to)
	}
	var res struct {
		Sent   []sentMessage `json:"sent"`
		Errors []errorStanza `json:"errors"`
	}
	offlineScript(t, &res, args...)
	return res.Sent, res.Errors
}

type receivedMessage struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Type       string `json:"type"`
	Body       string `json:"body"`
	DelayFrom  string `json:"delay_from"`
	DelayStamp string `json:"delay_stamp"`
}

// loginAndReceive logs the Dialtone users in (initial presence) at once
// and returns the messages each received.
func loginAndReceive(t *testing.T, x *xmppd, users ...user) map[string][]receivedMessage {
	t.Helper()
	args := []string{"receive", "--host", dialtoneIP, "--port", strconv.Itoa(x.c2s), "--expect", "1", "--step-timeout", "20"}
	for _, u := range users {
		args = append(args, "--user", u.jid+"="+u.password)
	}
	var res struct {
		Received map[string][]receivedMessage `json:"received"`
	}
	offlineScript(t, &res, args...)
	return res.Received
}

// accountShow returns xmppctl account show's key: value lines.
func (x *xmppd) accountShow(t *testing.T, xmppctl, number string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xmppctl, "account", "show", number)
	cmd.Env = x.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xmppctl account show %s: %v", number, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			kv[k] = v
		}
	}
	return kv
}

// waitAccount waits up to 5 seconds until the account shows want.
func (x *xmppd) waitAccount(t *testing.T, xmppctl, number string, want map[string]string) {
	t.Helper()
	var got map[string]string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = x.accountShow(t, xmppctl, number)
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if match {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("account %s: %v, want %v", number, got, want)
			return
		}
	}
}

// smsBarrier has xmppctl queue a test SMS to number and waits until the
// gateway got it: the server's worker sends what is due oldest first, so
// every SMS queued before it has arrived too.
func (x *xmppd) smsBarrier(t *testing.T, xmppctl, number string) {
	t.Helper()
	before := len(x.sms.To(number))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xmppctl, "sms", "test", number)
	cmd.Env = x.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xmppctl sms test %s: %v\n%s", number, err, out)
	}
	x.sms.Wait(t, number, before+1, noticeTimeout)
}

// canonicalKR is the E.164 form of a Korean mobile number written in
// national form (010-1234-5678).
func canonicalKR(national string) string {
	return "+82" + strings.ReplaceAll(national, "-", "")[1:]
}

func bare(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}

// offlineFromPeer: the peer's users write to phone numbers here that are
// offline (SPEC.md "Offline messages", "SMS texts"; issue 5 items 3 and 5):
//
//  1. peer[0] writes to active, an account here that has logged in and is
//     offline now, and to latent[0], a never-used number in national
//     form; both messages are stored and texted with SPEC's notice texts,
//     the sender named by its bare JID (it has no number); the notice to
//     the new number carries its password;
//  2. peer[1], of the same domain, writes to latent[1]: the domain has had
//     its one new number today (XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY=1),
//     so the message is stored without an SMS and the sender gets a
//     policy-violation error saying so;
//  3. active and latent[0] (with the texted password) log in and get their
//     message, from the peer's user, stamped by dialtone.test (XEP-0203).
func offlineFromPeer(t *testing.T, x *xmppd, xmppctl string, peer []user, active user, latent [2]string) {
	t.Helper()
	activeNum := bare(active.jid)[:strings.IndexByte(active.jid, '@')]
	newNum, cappedNum := canonicalKR(latent[0]), canonicalKR(latent[1])
	start := time.Now().Add(-time.Second)
	bodyActive := "while you were out, from " + bare(peer[0].jid)
	bodyLatent := "hello new number, from " + bare(peer[0].jid)
	bodyCapped := "one number too many, from " + bare(peer[1].jid)

	sent, errs := sendFrom(t, peer[0], [][2]string{
		{active.jid, bodyActive},
		{latent[0] + "@" + dialtoneDomain, bodyLatent},
	}, time.Second)
	if len(sent) != 2 || len(errs) != 0 {
		t.Fatalf("messages to offline numbers: sent %+v, errors back %+v, want none", sent, errs)
	}
	m := x.sms.Wait(t, activeNum, 1, noticeTimeout)
	if want := `New message from ` + bare(peer[0].jid) + ` on ` + dialtoneDomain + `: "` + bodyActive + `".`; m.Text != want || m.Purpose != "notice" {
		t.Errorf("notice to the offline account %s: %+v, want text %q", activeNum, m, want)
	}
	m = x.sms.Wait(t, newNum, 1, noticeTimeout)
	re := regexp.MustCompile(`^New message from ` + regexp.QuoteMeta(bare(peer[0].jid)) + ` on ` + regexp.QuoteMeta(dialtoneDomain) +
		`: "` + regexp.QuoteMeta(bodyLatent) + `"\. Log in with your phone number and password ([A-Za-z0-9]{10,}), or tap http://\S+/l/[A-Za-z0-9_-]{22}$`)
	pw := re.FindStringSubmatch(m.Text)
	if pw == nil || m.Purpose != "notice" {
		t.Fatalf("notice to the never-used number %s (written %s): %+v, want it to match %s", newNum, latent[0], m, re)
	}
	x.waitAccount(t, xmppctl, newNum, map[string]string{"state": "unclaimed", "stored_messages": "1"})

	// The same domain, another user: over the domain's cap.
	sent, errs = sendFrom(t, peer[1], [][2]string{{latent[1] + "@" + dialtoneDomain, bodyCapped}}, 15*time.Second, latent[1]+"@"+dialtoneDomain)
	if len(sent) != 1 || len(errs) != 1 || errs[0].ID != sent[0].ID {
		t.Fatalf("message over the domain's cap: sent %+v, errors back %+v, want one error for it", sent, errs)
	}
	if e := errs[0]; e.Type != "cancel" || e.Condition != "policy-violation" || !strings.Contains(e.Text, "no SMS was sent") ||
		!strings.Contains(e.Text, "senders from "+peerDomain(peer[1])+" reached today's limit") ||
		bare(e.From) != cappedNum+"@"+dialtoneDomain || bare(e.To) != bare(peer[1].jid) {
		t.Errorf("error for the message over the cap: %+v, want cancel/policy-violation from %s@%s saying that no SMS was sent as %s reached its limit", e, cappedNum, dialtoneDomain, peerDomain(peer[1]))
	}
	x.waitAccount(t, xmppctl, latent[1], map[string]string{"state": "unclaimed", "stored_messages": "1"})
	// An SMS would have been queued with the message: one queued after
	// it arrives later.
	x.smsBarrier(t, xmppctl, canonicalKR("010-5555-0123"))
	if got := x.sms.To(cappedNum); len(got) != 0 {
		t.Errorf("SMS to the number over the domain's cap: %+v", got)
	}
	for _, n := range []string{activeNum, newNum} {
		if got := x.sms.To(n); len(got) != 1 {
			t.Errorf("%d SMS to %s, want 1: %+v", len(got), n, got)
		}
	}

	newUser := user{jid: newNum + "@" + dialtoneDomain, password: pw[1]}
	got := loginAndReceive(t, x, active, newUser)
	for _, c := range []struct {
		u    user
		body string
	}{{active, bodyActive}, {newUser, bodyLatent}} {
		msgs := got[c.u.jid]
		if len(msgs) != 1 {
			t.Errorf("%s got %d messages on login, want 1: %+v", c.u.jid, len(msgs), msgs)
			continue
		}
		d := msgs[0]
		stamp, err := time.Parse(time.RFC3339Nano, d.DelayStamp)
		if d.Body != c.body || bare(d.From) != bare(peer[0].jid) || d.Type != "chat" || d.DelayFrom != dialtoneDomain ||
			err != nil || stamp.Before(start) || stamp.After(time.Now()) {
			t.Errorf("%s got %+v, want %q from %s, delay from %s stamped since %v (%v)", c.u.jid, d, c.body, peer[0].jid, dialtoneDomain, start.UTC(), err)
		}
	}
	x.waitAccount(t, xmppctl, activeNum, map[string]string{"state": "active", "stored_messages": "0"})
	x.waitAccount(t, xmppctl, newNum, map[string]string{"state": "active", "stored_messages": "0"})
	if !t.Failed() {
		t.Logf("offline messages from %s: stored, texted to %s and %s, capped for %s with policy-violation, delivered on login with delay stamps; notices: %q, %q",
			peerDomain(peer[0]), activeNum, newNum, cappedNum, x.sms.To(activeNum)[0].Text, pwRedacted(x.sms.To(newNum)[0].Text, pw[1]))
	}
}

// pwRedacted hides the password in a notice for the log.
func pwRedacted(text, password string) string {
	return strings.ReplaceAll(text, password, "PASSWORD")
}

func peerDomain(u user) string {
	return bare(u.jid)[strings.IndexByte(u.jid, '@')+1:]
}
