package cluster

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"dialtone/xmppd/router"
)

// TestLeaveNothingTwice: n1 writes a burst of messages to alice on n2,
// and n2 leaves (goodbye) while their acks are on the way. Each message
// ends exactly once: written to alice's stream by n2, or, never
// acknowledged, routed again by n1 (here to its Undelivered hooks); none
// both. n1 reads the goodbye on one goroutine and the acks on another:
// it must not route again what n2 acknowledged before it left.
func TestLeaveNothingTwice(t *testing.T) {
	url := natsURL(t)
	var mu sync.Mutex
	rerouted := map[string]int{}
	body := regexp.MustCompile(`<body>([^<]*)</body>`)
	n1 := newNodeWith(t, url, "n1", 5*time.Second, func(*testNode) []router.Module {
		return []router.Module{router.ModuleFunc(func(h *router.Hooks) error {
			h.Hook(router.Undelivered, router.Messages, 10, func(_ context.Context, ev *router.Event) error {
				if m := body.FindSubmatch(ev.Stanza.Inner); m != nil {
					mu.Lock()
					rerouted[string(m[1])]++
					mu.Unlock()
				}
				return nil
			})
			return nil
		})}
	})
	n2 := newNodeDead(t, url, "n2", 5*time.Second)
	a, ak := n2.bind(t, full(alice, "a"))
	eventually(t, "n1 mirrors alice/a", func() bool { return n1.r.Session(a.JID()) != nil })

	const total = 3000
	for i := range total {
		n1.r.Route(context.Background(), chat(full(bob, "b"), a.JID(), fmt.Sprint("m", i)))
	}
	eventually(t, "alice has some of them", func() bool { got, _ := ak.snapshot(); return len(got) > 0 })
	n2.c.Close()
	count := func() (written map[string]int, accounted int) {
		got, _ := ak.snapshot()
		written = map[string]int{}
		for _, s := range got {
			if m := body.FindStringSubmatch(s); m != nil {
				written[m[1]]++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range total {
			if k := fmt.Sprint("m", i); written[k]+rerouted[k] > 0 {
				accounted++
			}
		}
		return written, accounted
	}
	eventually(t, "every message written or routed again", func() bool { _, n := count(); return n == total })
	written, _ := count()
	mu.Lock()
	defer mu.Unlock()
	for i := range total {
		k := fmt.Sprint("m", i)
		if n := written[k] + rerouted[k]; n != 1 {
			t.Errorf("%s: written %d times, routed again %d times", k, written[k], rerouted[k])
		}
	}
	t.Logf("%d written by n2, %d routed again by n1", len(written), len(rerouted))
}

// TestMoved: a session handed over to another node is mirrored there by
// the node it left at once (Moved), with its presence, before that node
// announces it: a message routed here in between goes on to it rather
// than to offline storage.
func TestMoved(t *testing.T) {
	url := natsURL(t)
	n1, n2 := newNode(t, url, "n1"), newNode(t, url, "n2")
	eventually(t, "n1 knows n2", func() bool { return n1.c.peerNamed("n2") != nil })
	a := full(alice, "phone")
	old, _ := n1.bind(t, a)
	n1.r.Unregister(old) // given up, as sm.HandOver does
	n1.c.Moved(a.String(), "n2", &router.Stanza{Kind: router.KindPresence, From: a})
	m := n1.r.Session(a)
	if m == nil || !m.Remote() || !m.Available() {
		t.Fatalf("no available mirror of %s on n1 right after Moved: %v", a, m)
	}
	_, k := n2.bind(t, a)
	n1.r.Route(context.Background(), chat(full(bob, "b"), alice, "after the move"))
	eventually(t, "the message reaches alice on n2", func() bool {
		got, _ := k.snapshot()
		return len(got) == 1
	})
	if n1.undelivered.Load() != 0 || n2.undelivered.Load() != 0 {
		t.Fatal("a message went to offline storage")
	}
}

// TestAskAll: a question to all nodes gets each one's answer, and
// returns as soon as all answered.
func TestAskAll(t *testing.T) {
	url := natsURL(t)
	n1, n2, n3 := newNode(t, url, "n1"), newNode(t, url, "n2"), newNode(t, url, "n3")
	for _, n := range []*testNode{n2, n3} {
		if err := n.c.OnAsk("census", func(from string, q []byte) ([]byte, bool) {
			return []byte(n.c.Node() + " to " + from + ": " + string(q)), true
		}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "n1 knows n2 and n3", func() bool { return len(n1.c.Peers()) == 2 })
	start := time.Now()
	got := n1.c.AskAll(context.Background(), "census", []byte("how many?"))
	if len(got) != 2 {
		t.Fatalf("answers: %q", got)
	}
	seen := map[string]bool{}
	for _, a := range got {
		seen[string(a)] = true
	}
	if !seen["n2 to n1: how many?"] || !seen["n3 to n1: how many?"] {
		t.Fatalf("answers: %q", got)
	}
	if d := time.Since(start); d >= askTimeout {
		t.Fatalf("AskAll took %v: it waited for the timeout", d)
	}
}

// TestReroutedMarked: what a dead node never acknowledged is routed again
// marked as such (router.Rerouted), bytes unchanged, so that the hooks
// that act once per stanza (the archive's stanza-id) leave it as it was.
func TestReroutedMarked(t *testing.T) {
	url := natsURL(t)
	marked := make(chan bool, 1)
	n1 := newNode(t, url, "n1")
	n2 := newNodeWith(t, url, "n2", 400*time.Millisecond, func(*testNode) []router.Module {
		return []router.Module{router.ModuleFunc(func(h *router.Hooks) error {
			h.Hook(router.Undelivered, router.Messages, 10, func(ctx context.Context, ev *router.Event) error {
				select {
				case marked <- router.IsRerouted(ctx) && string(ev.Stanza.Inner) == "<body>again</body>":
				default:
				}
				return nil
			})
			return nil
		})}
	})
	a, _ := n1.bind(t, full(alice, "a"))
	eventually(t, "n2 mirrors alice/a", func() bool { return n2.r.Session(a.JID()) != nil })
	// n1 dies: no goodbye, no more beats, no acks.
	n1.c.cancel()
	n1.c.wg.Wait()
	n1.c.nc.Close()
	n2.r.Route(context.Background(), chat(full(bob, "b"), a.JID(), "again"))
	select {
	case ok := <-marked:
		if !ok {
			t.Fatal("routed again unmarked, or changed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("never routed again")
	}
}
