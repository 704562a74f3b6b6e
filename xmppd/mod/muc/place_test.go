package muc_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/mod/muc"
)

// placement is a cluster of two nodes, "here" and "there", as this node
// sees it: owner says which runs every group; what is handed to "there"
// is recorded.
type placement struct {
	mu      sync.Mutex
	owner   string
	handed  []string
	refuses bool // "there" just went: Forward fails
}

func (p *placement) Node() string { return "here" }

func (p *placement) Owner(string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owner
}

func (p *placement) Forward(node string, b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuses || node != "there" {
		return false
	}
	p.handed = append(p.handed, string(b))
	return true
}

func (p *placement) set(owner string, refuses bool) {
	p.mu.Lock()
	p.owner, p.refuses = owner, refuses
	p.mu.Unlock()
}

func (p *placement) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.handed)
}

// TestPlacement: a group another node runs now is saved and let go, its
// occupants told (332); stanzas for it, iqs included, are handed to that
// node unchanged; when it comes back here it is loaded from the store as
// it was saved, and one that the owner cannot take (gone) is served here.
func TestPlacement(t *testing.T) {
	p := &placement{owner: "here"}
	store := newMemStore()
	e := start(t, store, func(m *muc.Module) { m.Cluster = p })
	alice, _ := setup(t, e, map[string]string{"persistentroom": "1", "roomname": "Team"})

	p.set("there", false)
	e.m.NodesChanged()
	out := alice.Expect("unavailable, 332", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("from") == room+"/alice" && e.Attr("type") == "unavailable"
	})
	if !hasCode(out, 332) || !hasCode(out, 110) {
		t.Fatalf("told %v", out)
	}
	alice.Send(`<message type='groupchat' to='` + room + `' id='g1'><body>where?</body></message>`)
	alice.Send(`<iq type='get' id='sp' to='` + room + `/alice'><ping xmlns='urn:xmpp:ping'/></iq>`)
	deadline := time.Now().Add(5 * time.Second)
	for p.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.mu.Lock()
	handed := append([]string(nil), p.handed...)
	p.mu.Unlock()
	if len(handed) != 2 || !strings.Contains(handed[0], "<body>where?</body>") || !strings.Contains(handed[1], `id="sp"`) {
		t.Fatalf("handed over %q", handed)
	}

	// Back here: loaded from the store, configured as it was.
	backHere(t, e, p, alice, `name="Team"`)

	// Its owner is gone before this node knows: served here.
	p.set("there", true)
	if r := iq(alice, "sp2", "get", room+"/alice", `<ping xmlns='urn:xmpp:ping'/>`); r.Attr("type") != "result" {
		t.Fatalf("self-ping served here: %v", r)
	}
	if p.count() != 2 {
		t.Fatal("handed over to a node that is gone")
	}
}

// TestTemporaryGroupMoves: a temporary group in use that another node
// runs now is stored for it and loaded there as it was (not made again,
// its name kept); it leaves the store when it ends (its last occupant
// left), as a temporary group does.
func TestTemporaryGroupMoves(t *testing.T) {
	p := &placement{owner: "here"}
	store := newMemStore()
	e := start(t, store, func(m *muc.Module) { m.Cluster = p })
	alice, _ := setup(t, e, map[string]string{"roomname": "Passing"})
	stored := func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		_, ok := store.rooms[room]
		return ok
	}
	if stored() {
		t.Fatal("a temporary group stored before it moved")
	}

	p.set("there", false)
	e.m.NodesChanged()
	alice.Expect("unavailable, 332", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("from") == room+"/alice" && e.Attr("type") == "unavailable" && hasCode(e, 332)
	})
	if !stored() {
		t.Fatal("the moving temporary group was not stored for its new node")
	}

	// Its new node (here again, loading from the store).
	backHere(t, e, p, alice, `name="Passing"`, "muc_temporary")

	alice.Send(`<presence type='unavailable' to='` + room + `/alice'/>`)
	alice.Expect("left", isPresenceFrom(room+"/alice"))
	deadline := time.Now().Add(5 * time.Second)
	for stored() {
		if time.Now().After(deadline) {
			t.Fatal("the ended temporary group is still stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backHere makes this node run the group again; alice joins it, which
// loads it from the store: not made again, and its disco#info has each of
// want.
func backHere(t *testing.T, e *env, p *placement, alice *xmpptest.Client, want ...string) {
	t.Helper()
	p.set("here", false)
	e.m.NodesChanged()
	if self := joined(t, alice, "alice"); hasCode(self, 201) {
		t.Fatalf("the group was made again: %v", self)
	}
	info := iq(alice, "di", "get", room, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	for _, w := range want {
		if !strings.Contains(info.Inner, w) {
			t.Fatalf("disco#info after the move lacks %s: %v", w, info)
		}
	}
}
