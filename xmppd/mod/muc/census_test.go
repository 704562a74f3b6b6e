package muc_test

import (
	"context"
	"strings"
	"testing"

	"dialtone/xmppd/mod/muc"
)

// TestCensus: two services as two nodes of a cluster, each asking the
// other about its groups (Others → Answer, as the cluster's AskAll does):
// the list of public groups on one node shows the group the other runs,
// and a group owned on the other node counts towards the limit here.
func TestCensus(t *testing.T) {
	var a, b *env
	ask := func(other **env) muc.Census {
		return func(ctx context.Context, q []byte) [][]byte { return [][]byte{(*other).m.Answer(ctx, q)} }
	}
	a = start(t, newMemStore(), func(m *muc.Module) { m.Others = ask(&b) })
	b = start(t, newMemStore(), func(m *muc.Module) { m.Others, m.RoomsPerAccount = ask(&a), 1 })
	setup(t, a, map[string]string{"roomname": "Team", "publicroom": "1"}) // alice's group, on a

	bob := b.login(2, "phone")
	items := iq(bob, "it", "get", "groups.localhost", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if !strings.Contains(items.Inner, `jid="`+room+`" name="Team"`) {
		t.Fatalf("the list on b lacks the group a runs: %v", items)
	}
	alice := b.login(1, "phone")
	alice.Send(`<presence to='other@groups.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	p := alice.Expect("second group", isPresenceFrom("other@groups.localhost/alice"))
	if p.Attr("type") != "error" || !strings.Contains(p.Inner, "not-allowed") {
		t.Fatalf("a second group of an owner of one on the other node: %v", p)
	}
}
