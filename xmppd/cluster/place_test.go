package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// TestOwner: every node picks the same owner whatever order it sees the
// others in; keys spread over the nodes; when a node goes, only its keys
// move, and when it comes back they return.
func TestOwner(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	others := func(self string, except ...string) []string {
		var out []string
		for _, n := range slices.Backward(nodes) {
			if n != self && !slices.Contains(except, n) {
				out = append(out, n)
			}
		}
		return out
	}
	count := map[string]int{}
	const keys = 3000
	for i := range keys {
		key := fmt.Sprintf("room%d@groups.%s", i, domain)
		o := owner(key, "n1", others("n1"))
		for _, self := range nodes[1:] {
			if got := owner(key, self, others(self)); got != o {
				t.Fatalf("%s: %s picks %s, n1 picks %s", key, self, got, o)
			}
		}
		count[o]++
		// n2 goes: the keys of n1 and n3 stay where they are.
		after := owner(key, "n1", others("n1", "n2"))
		if o != "n2" && after != o || after == "n2" {
			t.Fatalf("%s moved from %s to %s when n2 went", key, o, after)
		}
	}
	for _, n := range nodes {
		if count[n] < keys/5 {
			t.Errorf("%s owns %d of %d keys: %v", n, count[n], keys, count)
		}
	}
	if got := owner("x", "solo", nil); got != "solo" {
		t.Fatalf("a single node's owner is %s", got)
	}
}

// TestForward: a stanza handed to another node reaches its OnForward
// function once, bytes unchanged, and is acknowledged; the nodes see each
// other's arrival and departure (OnChange) and agree on Owner; a stanza
// handed to a node that dies before it acknowledges is handed to Route
// again on the sending node.
func TestForward(t *testing.T) {
	url := natsURL(t)
	type got struct {
		mu  sync.Mutex
		b   []string
		chg int
	}
	var g1, g2 got
	var hold sync.WaitGroup // n2's OnForward waits on it: no ack yet
	setup := func(g *got, block bool) func(n *testNode) []router.Module {
		return func(n *testNode) []router.Module {
			n.c.OnForward(func(_ context.Context, st *router.Stanza) {
				g.mu.Lock()
				g.b = append(g.b, string(st.Bytes()))
				g.mu.Unlock()
				if block {
					hold.Wait()
				}
			})
			n.c.OnChange(func() { g.mu.Lock(); g.chg++; g.mu.Unlock() })
			// Routed to groups.DOMAIN: what comes back here is counted.
			return []router.Module{router.ModuleFunc(func(h *router.Hooks) error {
				h.AddHost("groups." + domain)
				h.Hook(router.ToHost, router.Messages|router.Presences|router.IQs, 0, func(_ context.Context, ev *router.Event) error {
					g.mu.Lock()
					g.b = append(g.b, "routed "+string(ev.Stanza.Bytes()))
					g.mu.Unlock()
					return router.ErrHandled
				})
				return nil
			})}
		}
	}
	n1 := newNodeWith(t, url, "n1", 400*time.Millisecond, setup(&g1, false))
	n2 := newNodeWith(t, url, "n2", 400*time.Millisecond, setup(&g2, true))
	eventually(t, "the nodes see each other", func() bool {
		return len(n1.c.Peers()) == 1 && len(n2.c.Peers()) == 1
	})
	g1.mu.Lock()
	changes := g1.chg
	g1.mu.Unlock()
	if changes == 0 {
		t.Fatal("no OnChange when n2 came")
	}
	room := "room@groups." + domain
	if n1.c.Owner(room) != n2.c.Owner(room) {
		t.Fatalf("owners differ: %s, %s", n1.c.Owner(room), n2.c.Owner(room))
	}
	if n1.c.Forward("nobody", []byte("<message/>")) {
		t.Fatal("forwarded to an unknown node")
	}

	// As the router writes it: what reaches n2 is read back and written
	// again by it, its children untouched.
	msg := &router.Stanza{Kind: router.KindMessage, Type: "groupchat", ID: "m1", From: full(alice, "a"),
		To: jid.MustParse(room), Inner: []byte("<body>as  it   was</body><x xmlns='urn:x'>&lt;</x>")}
	raw := string(msg.Bytes())
	if !n1.c.Forward("n2", []byte(raw)) {
		t.Fatal("Forward failed")
	}
	eventually(t, "n2 gets it", func() bool {
		g2.mu.Lock()
		defer g2.mu.Unlock()
		return len(g2.b) == 1
	})
	g2.mu.Lock()
	if g2.b[0] != raw {
		t.Fatalf("n2 got %q, want %q", g2.b[0], raw)
	}
	g2.mu.Unlock()
	// n2 acknowledges once its OnForward returned: it holds now.
	hold.Add(1)
	raw2 := strings.Replace(raw, "m1", "m2", 1)
	n1.c.Forward("n2", []byte(raw2))
	p := n1.c.peerNamed("n2")
	eventually(t, "n2 takes m2 and has not acknowledged it", func() bool {
		g2.mu.Lock()
		defer g2.mu.Unlock()
		return len(g2.b) == 2 && p.pendingLen() == 1
	})
	// n2 dies: m2 is handed to Route on n1 again, where the group now is.
	n2.c.cancel()
	n2.c.nc.Close()
	hold.Done()
	n2.c.wg.Wait()
	eventually(t, "n1 routes m2 again", func() bool {
		g1.mu.Lock()
		defer g1.mu.Unlock()
		return len(g1.b) == 1 && g1.b[0] == "routed "+raw2 && g1.chg >= 2
	})
	if n1.c.Owner(room) != "n1" {
		t.Fatal("n1 alone does not own the group")
	}
	g2.mu.Lock()
	defer g2.mu.Unlock()
	if len(g2.b) != 2 {
		t.Fatalf("n2 got %d stanzas: %q", len(g2.b), g2.b)
	}
}
