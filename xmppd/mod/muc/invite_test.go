package muc_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/internal/xmpptest"
	"dialtone/xmppd/mod/muc"
	"dialtone/xmppd/router"
)

// fakeInviter records the invitations kept for numbers without a session.
type fakeInviter struct {
	mu      sync.Mutex
	kept    []groups.Invitation
	names   []string
	warning error
	store   *memStore
}

func (f *fakeInviter) Invite(_ context.Context, inv groups.Invitation, group string) (error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kept, f.names = append(f.kept, inv), append(f.names, group)
	f.store.mu.Lock()
	f.store.invites = append(f.store.invites, inv)
	f.store.mu.Unlock()
	return f.warning, nil
}

// XEP-0249 direct invitations: to someone online they pass through and
// make the invitee a member; to a number with no session they are kept
// (and texted, account.Invitations) and delivered at its next login.
func TestDirectInvitations(t *testing.T) {
	store := newMemStore()
	inviter := &fakeInviter{store: store}
	e := start(t, store, func(m *muc.Module) { m.Invites = inviter })
	alice, _ := setup(t, e, map[string]string{"membersonly": "1", "roomname": "Team"})
	bob := e.login(2, "phone")
	alice.Send(`<message to='` + number(2) + `@localhost'><x xmlns='jabber:x:conference' jid='` + room + `' reason='come'/></message>`)
	d := bob.Expect("direct invitation", func(x xmpptest.Elem) bool { return strings.Contains(x.Inner, "jabber:x:conference") })
	if d.Attr("from") != number(1)+"@localhost/phone" {
		t.Fatalf("direct invitation %v", d)
	}
	joined(t, bob, "bob") // a member now

	// A number without a session: kept, not routed.
	alice.Send(`<message to='` + number(3) + `@localhost' id='d3'><x xmlns='jabber:x:conference' jid='` + room + `'/></message>`)
	alice.Sync()
	inviter.mu.Lock()
	if len(inviter.kept) != 1 || inviter.kept[0].Invitee != number(3) || inviter.kept[0].Room != room || inviter.names[0] != "Team" {
		t.Fatalf("kept %+v %v", inviter.kept, inviter.names)
	}
	inviter.warning = router.NewError(stanza.Cancel, stanza.PolicyViolation, "no SMS was sent")
	inviter.mu.Unlock()
	carol := e.connect(3, "phone")
	carol.Send(`<presence/>`)
	inv := carol.Expect("kept invitation", func(x xmpptest.Elem) bool { return x.XMLName.Local == "message" && x.Attr("from") == room })
	if !strings.Contains(inv.Inner, `<invite from="`+number(1)+`@localhost"`) || !strings.Contains(inv.Inner, "urn:xmpp:delay") {
		t.Fatalf("delivered invitation %v", inv)
	}
	joined(t, carol, "carol")

	// Over the caps: the inviter hears that no SMS was sent.
	alice.Send(`<message to='` + room + `' id='m4'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='` + number(4) + `@localhost'/></x></message>`)
	if e := expectError(t, alice, "message", "policy-violation"); !strings.Contains(e.Inner, "no SMS was sent") {
		t.Fatalf("warning %v", e)
	}
	// A participant of a room that does not allow invitations may not.
	configure(t, alice, map[string]string{"allowinvites": "0"})
	bob.Send(`<message to='` + room + `'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='` + number(5) + `@localhost'/></x></message>`)
	expectError(t, bob, "message", "forbidden")
}
