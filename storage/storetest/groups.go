package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/groups"
	"dialtone/sms"
	"dialtone/storage"
)

var groupTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"GroupRooms", testGroupRooms},
	{"GroupArchive", testGroupArchive},
	{"GroupInvitations", testGroupInvitations},
	{"GroupAffiliationsGoWithAccount", testGroupAffiliationsGoWithAccount},
}

const groupRoom = "team@groups.example.org"

var groupT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testGroupRooms(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	r := groups.Room{JID: groupRoom, Config: []byte(`{"name":"Team"}`), Subject: "Plans", SubjectBy: "alice", Created: groupT0}
	must(t, db.PutMUCRoom(ctx, r))
	r.VCard = []byte("<vCard xmlns='vcard-temp'/>")
	r.Subject = "New"
	must(t, db.PutMUCRoom(ctx, r))
	must(t, db.PutMUCRoom(ctx, groups.Room{JID: "other@groups.example.org", Config: []byte(`{}`), Created: groupT0}))
	rooms, err := db.MUCRooms(ctx)
	must(t, err)
	if len(rooms) != 2 || !reflect.DeepEqual(rooms[1], r) {
		t.Fatalf("rooms %+v", rooms)
	}
	for _, a := range []groups.Affiliation{
		{Room: groupRoom, JID: "+15550000001@example.org", Affiliation: "owner"},
		{Room: groupRoom, JID: "+15550000002@example.org", Affiliation: "member", Nick: "bob"},
		{Room: groupRoom, JID: "+15550000003@example.org", Affiliation: "outcast", Reason: "spam"},
		{Room: groupRoom, JID: "+15550000002@example.org", Affiliation: "admin", Nick: "bob"}, // replaces
		{Room: groupRoom, JID: "+15550000003@example.org", Affiliation: "none"},               // removes
		{Room: "other@groups.example.org", JID: "+15550000001@example.org", Affiliation: "owner"},
	} {
		must(t, db.SetMUCAffiliation(ctx, a))
	}
	affs, err := db.MUCAffiliations(ctx)
	must(t, err)
	want := []groups.Affiliation{
		{Room: "other@groups.example.org", JID: "+15550000001@example.org", Affiliation: "owner"},
		{Room: groupRoom, JID: "+15550000001@example.org", Affiliation: "owner"},
		{Room: groupRoom, JID: "+15550000002@example.org", Affiliation: "admin", Nick: "bob"},
	}
	if !reflect.DeepEqual(affs, want) {
		t.Fatalf("affiliations %+v", affs)
	}
	must(t, db.AppendMUCArchive(ctx, []groups.Message{{Room: groupRoom, ID: "a", Stamp: groupT0, Nick: "alice", Sender: "x", Stanza: []byte("<message/>")}}))
	must(t, db.DeleteMUCRoom(ctx, groupRoom))
	rooms, err = db.MUCRooms(ctx)
	must(t, err)
	affs, err2 := db.MUCAffiliations(ctx)
	must(t, err2)
	msgs, _, err3 := db.MUCArchive(ctx, groupRoom, groups.Query{})
	must(t, err3)
	if len(rooms) != 1 || len(affs) != 1 || len(msgs) != 0 {
		t.Fatalf("after delete: rooms %+v, affiliations %+v, archive %+v", rooms, affs, msgs)
	}
}

func testGroupArchive(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	var batch []groups.Message
	for i := range 10 {
		// Messages 3, 6 and 9 are bob's (nick "bob", then "robert" for 9).
		nick, sender := "alice", "+15550000001@example.org"
		if i%3 == 0 && i > 0 {
			nick, sender = "bob", "+15550000002@example.org"
		}
		if i == 9 {
			nick = "robert"
		}
		batch = append(batch, groups.Message{Room: groupRoom, ID: fmt.Sprintf("id%d", i), Stamp: groupT0.Add(time.Duration(i) * time.Minute),
			Nick: nick, Sender: sender, Stanza: []byte(fmt.Sprintf("<message><body>%d</body></message>", i))})
	}
	must(t, db.AppendMUCArchive(ctx, batch[:4]))
	must(t, db.AppendMUCArchive(ctx, batch[4:]))
	must(t, db.AppendMUCArchive(ctx, []groups.Message{{Room: "other@groups.example.org", ID: "id0", Stamp: groupT0, Nick: "bob",
		Sender: "+15550000002@example.org", Stanza: []byte("<message/>")}}))
	ids := func(msgs []groups.Message) string {
		s := ""
		for _, m := range msgs {
			s += m.ID[2:]
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		q        groups.Query
		want     string
		complete bool
	}{
		{"all", groups.Query{}, "0123456789", true},
		{"first page", groups.Query{Max: 3}, "012", false},
		{"after", groups.Query{Max: 3, AfterID: "id2"}, "345", false},
		{"last page", groups.Query{Max: 3, AfterID: "id6"}, "789", true},
		{"newest", groups.Query{Max: 3, Last: true}, "789", false},
		{"before", groups.Query{Max: 3, Last: true, BeforeID: "id7"}, "456", false},
		{"oldest before", groups.Query{Max: 3, Last: true, BeforeID: "id2"}, "01", true},
		{"time range", groups.Query{Start: groupT0.Add(2 * time.Minute), End: groupT0.Add(4 * time.Minute)}, "234", true},
		{"with nick", groups.Query{Nick: "bob"}, "36", true},
		{"with sender", groups.Query{Sender: "+15550000002@example.org"}, "369", true},
		{"with sender, paged", groups.Query{Sender: "+15550000002@example.org", Max: 1, AfterID: "id3"}, "6", false},
		{"with sender, newest", groups.Query{Sender: "+15550000002@example.org", Max: 2, Last: true}, "69", false},
		{"with sender and nick", groups.Query{Sender: "+15550000002@example.org", Nick: "robert"}, "9", true},
		{"with nick, time range", groups.Query{Nick: "alice", Start: groupT0.Add(4 * time.Minute)}, "4578", true},
		{"with nobody", groups.Query{Nick: "carol"}, "", true},
	} {
		msgs, complete, err := db.MUCArchive(ctx, groupRoom, tc.q)
		must(t, err)
		if ids(msgs) != tc.want || complete != tc.complete {
			t.Errorf("%s: got %s complete=%v, want %s complete=%v", tc.name, ids(msgs), complete, tc.want, tc.complete)
		}
	}
	msgs, _, err := db.MUCArchive(ctx, groupRoom, groups.Query{AfterID: "id5", Max: 1})
	must(t, err)
	if len(msgs) != 1 || !reflect.DeepEqual(msgs[0], batch[6]) {
		t.Errorf("round trip %+v", msgs)
	}
	if _, _, err := db.MUCArchive(ctx, groupRoom, groups.Query{AfterID: "nope"}); !errors.Is(err, groups.ErrUnknownID) {
		t.Errorf("unknown id: %v", err)
	}
}

func testGroupInvitations(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550000020")
	c := creds(7)
	note := queuedSMS("inv1", string(n), groupT0)
	inv := groups.Invitation{Invitee: string(n), Room: groupRoom, Inviter: "+15550000001@example.org", Reason: "join", Password: "pw", Stamp: groupT0}
	must(t, db.StoreInvitation(ctx, inv, sms.NoticePlan{To: n, At: groupT0, Create: true, Credentials: &c,
		FirstNotice: true, PasswordDelivered: true, SMS: []sms.Pending{note}, CountFor: "+15550000001"}))
	a, err := db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateUnclaimed || !reflect.DeepEqual(a.Credentials, c) {
		t.Fatalf("account made by an invitation %+v", a)
	}
	due, err := db.DueSMS(ctx, groupT0.Add(time.Hour), 10)
	must(t, err)
	if len(due) != 1 || due[0].ID != "inv1" {
		t.Fatalf("queued SMS %+v", due)
	}
	nums, err := db.NoticedNumbers(ctx, "+15550000001", groupT0.Add(-time.Hour))
	must(t, err)
	if len(nums) != 1 || nums[0] != string(n) {
		t.Fatalf("noticed numbers %v", nums)
	}
	// A second invitation to the now existing account: a stale plan that
	// would make it again writes nothing.
	if err := db.StoreInvitation(ctx, inv, sms.NoticePlan{To: n, At: groupT0, Create: true, Credentials: &c}); !errors.Is(err, sms.ErrStale) {
		t.Fatalf("stale plan: %v", err)
	}
	inv2 := inv
	inv2.Room, inv2.Password = "other@groups.example.org", ""
	must(t, db.StoreInvitation(ctx, inv2, sms.NoticePlan{To: n, At: groupT0.Add(time.Minute)}))
	invs, err := db.MUCInvitations(ctx, string(n))
	must(t, err)
	if len(invs) != 2 || !reflect.DeepEqual(invs[0], inv) || invs[1].Room != inv2.Room {
		t.Fatalf("invitations %+v", invs)
	}
	must(t, db.DeleteMUCInvitations(ctx, string(n)))
	invs, err = db.MUCInvitations(ctx, string(n))
	must(t, err)
	if len(invs) != 0 {
		t.Fatalf("after delete %+v", invs)
	}
	// They go with the account, too.
	must(t, db.StoreInvitation(ctx, inv, sms.NoticePlan{To: n, At: groupT0}))
	must(t, db.DeleteAccount(ctx, n))
	invs, err = db.MUCInvitations(ctx, string(n))
	must(t, err)
	if len(invs) != 0 {
		t.Fatalf("after the account's deletion %+v", invs)
	}
}

// The affiliations a local account owns go when it is wiped (recycled),
// deleted or released; a remote JID's, even with the same localpart, stay.
func testGroupAffiliationsGoWithAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const room = "gone@groups.example.org"
	nums := []auth.Number{"+15550003001", "+15550003002", "+15550003003"}
	for _, n := range nums {
		creds, err := auth.NewCredentials("pw")
		must(t, err)
		_, err = db.SetCredentials(ctx, n, creds)
		must(t, err)
		must(t, db.SetMUCAffiliation(ctx, groups.Affiliation{Room: room, JID: string(n) + "@example.org", Affiliation: "member", Owner: string(n)}))
	}
	remote := groups.Affiliation{Room: room, JID: "+15550003001@elsewhere.example", Affiliation: "member", Nick: "r"}
	must(t, db.SetMUCAffiliation(ctx, remote))
	must(t, db.WipeAccountData(ctx, nums[0]))
	must(t, db.DeleteAccount(ctx, nums[1]))
	affs, err := db.MUCAffiliations(ctx)
	must(t, err)
	var left []groups.Affiliation
	for _, a := range affs {
		if a.Room == room {
			left = append(left, a)
		}
	}
	want := []groups.Affiliation{remote, {Room: room, JID: "+15550003003@example.org", Affiliation: "member", Owner: "+15550003003"}}
	if !reflect.DeepEqual(left, want) {
		t.Fatalf("affiliations left %+v, want %+v", left, want)
	}
}
