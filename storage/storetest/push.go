package storetest

import (
	"reflect"
	"testing"

	"dialtone/auth"
	pushdom "dialtone/push"
	"dialtone/storage"
)

// pushTests are the contract of the push registrations (push.Store); Run
// runs them.
var pushTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"PushRegistrations", testPushRegistrations},
}

func testPushRegistrations(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550009050", "+15550009051"
	list := func(owner string, want ...pushdom.Registration) {
		t.Helper()
		got, err := db.PushRegistrations(ctx, owner)
		must(t, err)
		if len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("registrations of %s: %+v, want %+v", owner, got, want)
		}
	}
	list(owner)
	a := pushdom.Registration{Owner: owner, JID: "push.example.com", Node: "n1", Options: []byte(`<x xmlns="jabber:x:data" type="submit"/>`)}
	b := pushdom.Registration{Owner: owner, JID: "push.example.com", Node: "n2"}
	c := pushdom.Registration{Owner: owner, JID: "up.example.org", Node: "n1"}
	for _, r := range []pushdom.Registration{a, b, c, {Owner: other, JID: "push.example.com", Node: "n1"}} {
		must(t, db.AddPush(ctx, r))
	}
	list(owner, a, b, c)
	a.Options = []byte(`<x xmlns="jabber:x:data" type="submit"><field var="secret"><value>s</value></field></x>`)
	must(t, db.AddPush(ctx, a)) // replaces
	list(owner, a, b, c)
	must(t, db.RemovePush(ctx, owner, "up.example.org", "n1"))
	list(owner, a, b)
	must(t, db.RemovePush(ctx, owner, "push.example.com", "")) // every node
	list(owner)
	list(other, pushdom.Registration{Owner: other, JID: "push.example.com", Node: "n1"})
	_, err := db.SetCredentials(ctx, auth.Number(other), creds(2))
	must(t, err)
	must(t, db.WipeAccountData(ctx, auth.Number(other)))
	list(other)
}
