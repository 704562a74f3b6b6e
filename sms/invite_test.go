package sms

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"dialtone/auth"
)

func (e *noticeEnv) invite(t *testing.T, from string, to auth.Number, group string) NoticeResult {
	t.Helper()
	res, err := e.n.NotifyInvite(context.Background(), Invite{To: to, Sender: from, Counter: from, Group: group}, e.store.write)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestInviteToLatentNumber(t *testing.T) {
	e := newNoticeEnv(t)
	if res := e.invite(t, alice, bob, "Family"); !res.Notified || res.Refused != nil {
		t.Fatalf("result %+v", res)
	}
	got := e.store.texts(t, string(bob))
	re := regexp.MustCompile(`^\+821011110000 added you to the group "Family" on example\.org\. Log in with your phone number and password [A-Za-z0-9]{12}\.$`)
	if len(got) != 1 || !re.MatchString(got[0]) {
		t.Fatalf("invitation SMS %q", got)
	}
	if r := e.store.accounts[bob]; r == nil || !r.Exists || r.Claimed || !r.PasswordDelivered {
		t.Fatalf("account %+v", r)
	}
	if len(e.store.windows) != 0 {
		t.Errorf("an invitation opened a notice window")
	}
	// A second invitation: plain, no password again.
	e.invite(t, alice, bob, "Work")
	wantTexts(t, e.store.texts(t, string(bob))[1:], `+821011110000 added you to the group "Work" on example.org.`)
}

func TestInviteCaps(t *testing.T) {
	e := newNoticeEnv(t)
	e.n.NewNumbersPerSenderDay, e.n.PerDay = 1, 1
	e.invite(t, alice, bob, "A")
	res := e.invite(t, alice, "+821040000001", "A")
	if !errors.Is(res.Refused, ErrNewNumbersCap) || res.Notified {
		t.Fatalf("over the new numbers cap: %+v", res)
	}
	if got := e.store.texts(t, "+821040000001"); len(got) != 0 {
		t.Fatalf("SMS over the cap %q", got)
	}
	if res := e.invite(t, alice, bob, "B"); !errors.Is(res.Refused, ErrNoticesPerDay) {
		t.Fatalf("over the daily cap: %+v", res)
	}
	e.online[bob] = true
	if res := e.invite(t, "+821055550000", bob, "C"); res.Notified || res.Refused != nil {
		t.Fatalf("online receiver: %+v", res)
	}
}

func TestInviteTextCutsLongNames(t *testing.T) {
	text := NoticeText(Notice{Domain: "example.org", Sender: "+821011110000", Group: strings.Repeat("long name ", 40)})
	if c, _ := Segments(text); c != 1 || !strings.HasSuffix(text, `..." on example.org.`) {
		t.Fatalf("cut name: %q (%d segments)", text, c)
	}
}
