package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/cluster"
)

// readUntil reads c's stream (at most 200 elements, each within d) until
// stop accepts one, which it returns, counting in got the bodies of the
// groupchat messages from room it read meanwhile.
func readUntil(t *testing.T, c *xmpptest.Client, room string, got map[string]int, d time.Duration, stop func(xmpptest.Elem) bool) xmpptest.Elem {
	t.Helper()
	for range 200 {
		e, err := c.TryNext(d)
		if err != nil {
			t.Fatalf("%s: reading: %v", c.JID, err)
		}
		if e.XMLName.Local == "message" && e.Attr("type") == "groupchat" && strings.HasPrefix(e.Attr("from"), room+"/") && body(e) != "" {
			got[body(e)]++
		}
		if stop(e) {
			return e
		}
	}
	t.Fatalf("%s: 200 elements and not the one awaited", c.JID)
	return xmpptest.Elem{}
}

// occupant is a client in the group under a nick.
type occupant struct {
	c    *xmpptest.Client
	nick string
	got  map[string]int // bodies of groupchat messages, counted
}

func (o *occupant) join(t *testing.T, room string) {
	t.Helper()
	o.c.Send(`<presence to='` + room + `/` + o.nick + `'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	readUntil(t, o.c, room, o.got, 10*time.Second, func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("from") == room+"/"+o.nick && strings.Contains(e.Inner, `code="110"`)
	})
}

// say sends body to the group and reads until the group sends it back.
func (o *occupant) say(t *testing.T, room, text string) {
	t.Helper()
	o.c.Send(`<message type='groupchat' to='` + room + `'><body>` + text + `</body></message>`)
	readUntil(t, o.c, room, o.got, 10*time.Second, func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && body(e) == text
	})
}

// selfPing pings the occupant's own JID in the group (XEP-0410) and
// returns the answer; what the group sent before it is read first (the
// answer comes the same way).
func (o *occupant) selfPing(t *testing.T, room, id string, d time.Duration) xmpptest.Elem {
	t.Helper()
	o.c.Send(`<iq type='get' id='` + id + `' to='` + room + `/` + o.nick + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	return readUntil(t, o.c, room, o.got, d, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
}

// onlyOnce checks that o got exactly the bodies want, each once.
func (o *occupant) onlyOnce(t *testing.T, want ...string) {
	t.Helper()
	if len(o.got) != len(want) {
		t.Errorf("%s got %v, want each of %q once", o.nick, o.got, want)
	}
	for _, w := range want {
		if o.got[w] != 1 {
			t.Errorf("%s got %q %d times, want once (all: %v)", o.nick, w, o.got[w], o.got)
		}
	}
	clear(o.got)
}

// archived reads the group's archive (XEP-0313) through c: the bodies.
func archived(t *testing.T, c *xmpptest.Client, room, id string) map[string]int {
	t.Helper()
	got := map[string]int{}
	c.Send(`<iq type='set' id='` + id + `' to='` + room + `'><query xmlns='urn:xmpp:mam:2' queryid='` + id + `'/></iq>`)
	for range 200 {
		e := c.Next()
		if e.Attr("id") == id {
			if e.Attr("type") != "result" {
				t.Fatalf("archive query: %v", e)
			}
			return got
		}
		if e.XMLName.Local == "message" && strings.Contains(e.Inner, `queryid="`+id+`"`) {
			if i := strings.Index(e.Inner, "<body>"); i >= 0 {
				j := strings.Index(e.Inner[i:], "</body>")
				got[e.Inner[i+len("<body>"):i+j]]++
			}
		}
	}
	t.Fatal("archive query: no answer in 200 elements")
	return nil
}

// TestClusterGroups: occupants on three nodes join one group, which runs
// on one node (its owner); each sees every message once. The owner is
// killed: the others' self-ping says they are not in the group any more,
// they join again on its new node, get the discussion history, chat
// again, and the archive has everything.
func TestClusterGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster: not with -short (make check); make test runs it")
	}
	nodes, _, _, bins := startCluster(t)
	// A group that n3 runs while all three are up.
	room := ""
	for i := range 100 {
		r := fmt.Sprintf("grp%d@groups.localhost", i)
		if cluster.OwnerAmong(r, []string{"n1", "n2", "n3"}) == "n3" {
			room = r
			break
		}
	}
	var occ []*occupant
	for i, num := range []string{numberA, numberB, numberC} {
		pass := xmppctl(t, bins["xmppctl"], nodes[0].env, "account", "reset", num, "--print")
		c := xmpptest.Login(t, "127.0.0.1:"+nodes[i].c2s, num, pass, "r")
		c.Available()
		occ = append(occ, &occupant{c: c, nick: fmt.Sprintf("nick%d", i+1), got: map[string]int{}})
	}
	// Every node knows every session (the group's node writes to them).
	for _, from := range occ {
		for _, to := range occ {
			if from != to {
				stop := answering(to.c)
				reach(t, from.c, to.c)
				stop()
			}
		}
	}
	a, b, c := occ[0], occ[1], occ[2]
	// A makes it, persistent, from n1: n3 runs it.
	a.join(t, room)
	a.c.Send(`<iq type='set' id='cfg' to='` + room + `'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>` +
		`<field var='muc#roomconfig_persistentroom'><value>1</value></field>` +
		`<field var='muc#roomconfig_publicroom'><value>1</value></field></x></query></iq>`)
	if res := readUntil(t, a.c, room, a.got, 10*time.Second, func(e xmpptest.Elem) bool { return e.Attr("id") == "cfg" }); res.Attr("type") != "result" {
		t.Fatalf("configuring: %v", res)
	}
	// The list of groups, asked of n1 and n2, has the group n3 runs.
	for _, o := range []*occupant{a, b} {
		o.c.Send(`<iq type='get' id='list' to='groups.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
		if res := readUntil(t, o.c, room, o.got, 10*time.Second, func(e xmpptest.Elem) bool { return e.Attr("id") == "list" }); !strings.Contains(res.Inner, `jid="`+room+`"`) {
			t.Fatalf("%s's node does not list %s: %v", o.nick, room, res)
		}
	}
	b.join(t, room)
	c.join(t, room)
	for _, o := range occ {
		o.say(t, room, "before from "+o.nick)
	}
	for _, o := range occ {
		if res := o.selfPing(t, room, "fin1", 10*time.Second); res.Attr("type") != "result" {
			t.Fatalf("%s self-ping: %v", o.nick, res)
		}
		o.onlyOnce(t, "before from nick1", "before from nick2", "before from nick3")
	}
	// The archive has them (it is written off the message path).
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; len(archived(t, a.c, room, fmt.Sprintf("mam%d", i))) < 3; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the archive never had the three messages")
		}
		time.Sleep(100 * time.Millisecond)
	}

	nodes[2].kill()
	for _, o := range []*occupant{a, b} {
		res := o.selfPing(t, room, "after", 20*time.Second)
		if res.Attr("type") != "error" || !strings.Contains(res.Inner, "not-acceptable") {
			t.Fatalf("%s self-ping after the owner died: %v", o.nick, res)
		}
		clear(o.got)
	}
	for _, o := range []*occupant{a, b} {
		o.join(t, room)
		// Then the history, then the subject.
		readUntil(t, o.c, room, o.got, 10*time.Second, func(e xmpptest.Elem) bool {
			return e.XMLName.Local == "message" && strings.Contains(e.Inner, "<subject")
		})
		o.onlyOnce(t, "before from nick1", "before from nick2", "before from nick3")
	}
	for _, o := range []*occupant{a, b} {
		o.say(t, room, "after from "+o.nick)
	}
	for _, o := range []*occupant{a, b} {
		if res := o.selfPing(t, room, "fin2", 10*time.Second); res.Attr("type") != "result" {
			t.Fatalf("%s self-ping: %v", o.nick, res)
		}
		o.onlyOnce(t, "after from nick1", "after from nick2")
	}
	got := archived(t, b.c, room, "mamlast")
	for _, w := range []string{"before from nick1", "before from nick2", "before from nick3", "after from nick1", "after from nick2"} {
		if got[w] != 1 {
			t.Errorf("archive has %q %d times (all: %v)", w, got[w], got)
		}
	}
}
