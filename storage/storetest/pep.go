package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"dialtone/auth"
	"dialtone/pubsub"
	"dialtone/storage"
)

// pepTests are the contract of the PEP nodes and items (pubsub.Store).
var pepTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"PEPPublish", testPEPPublish},
	{"PEPNodes", testPEPNodes},
	{"PEPConcurrentPublish", testPEPConcurrentPublish},
	{"PEPGoesWithAccount", testPEPGoesWithAccount},
	{"PEPSubscriptions", testPEPSubscriptions},
}

func itemIDs(items []pubsub.Item) []string {
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

func wantPEPNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, pubsub.ErrNotFound) {
		t.Fatalf("%s: %v, want pubsub.ErrNotFound", what, err)
	}
}

// Publishing creates the node with the given configuration once; items
// come back newest first, a republished id becomes the newest, the
// oldest beyond max_items go, retract and lookups by id work.
func testPEPPublish(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, node = "+15550002001", "urn:xmpp:avatar:data"
	_, err := db.PEPItems(ctx, owner, node, nil, 0)
	wantPEPNotFound(t, "items of no node", err)
	c := pubsub.Default()
	c.MaxItems = 3
	c.AccessModel = pubsub.AccessOpen
	cfg, created, err := db.PublishPEPItem(ctx, owner, node, c, pubsub.Item{ID: "a", Payload: []byte(`<x xmlns="urn:x">a</x>`)})
	must(t, err)
	if !created || cfg != c {
		t.Fatalf("first publish: created %v, config %+v", created, cfg)
	}
	other := pubsub.Default()
	for _, id := range []string{"b", "c", "a", "d"} {
		cfg, created, err = db.PublishPEPItem(ctx, owner, node, other, pubsub.Item{ID: id, Payload: []byte(`<x xmlns="urn:x">` + id + `</x>`)})
		must(t, err)
		if created || cfg != c {
			t.Fatalf("publish %s: created %v, config %+v (the node's must stay)", id, created, cfg)
		}
	}
	items, err := db.PEPItems(ctx, owner, node, nil, 0)
	must(t, err)
	if got := itemIDs(items); !slices.Equal(got, []string{"d", "a", "c"}) || string(items[1].Payload) != `<x xmlns="urn:x">a</x>` {
		t.Fatalf("items %v", got)
	}
	items, err = db.PEPItems(ctx, owner, node, nil, 1)
	must(t, err)
	if got := itemIDs(items); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("max 1: %v", got)
	}
	items, err = db.PEPItems(ctx, owner, node, []string{"c", "b", "zz"}, 0)
	must(t, err)
	if got := itemIDs(items); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("by id: %v", got)
	}
	must(t, db.RetractPEPItem(ctx, owner, node, "a"))
	wantPEPNotFound(t, "retract again", db.RetractPEPItem(ctx, owner, node, "a"))
	wantPEPNotFound(t, "retract from no node", db.RetractPEPItem(ctx, owner, "nope", "d"))
	// Reconfiguring to fewer items drops the oldest.
	c.MaxItems = 1
	must(t, db.PutPEPNode(ctx, owner, node, c))
	items, err = db.PEPItems(ctx, owner, node, nil, 0)
	must(t, err)
	if got := itemIDs(items); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("after max_items 1: %v", got)
	}
	got, err := db.PEPNode(ctx, owner, node)
	must(t, err)
	if got != c {
		t.Fatalf("config %+v, want %+v", got, c)
	}
}

// Nodes are per owner; deleting one removes its items and only its.
func testPEPNodes(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const a, b = "+15550002011", "+15550002012"
	for _, n := range []string{"n2", "n1"} {
		_, _, err := db.PublishPEPItem(ctx, a, n, pubsub.Default(), pubsub.Item{ID: "x", Payload: []byte(`<p xmlns="urn:p"/>`)})
		must(t, err)
	}
	_, _, err := db.PublishPEPItem(ctx, b, "n1", pubsub.Default(), pubsub.Item{ID: "y", Payload: []byte(`<p xmlns="urn:p"/>`)})
	must(t, err)
	white := pubsub.Default()
	white.AccessModel = pubsub.AccessWhitelist
	must(t, db.PutPEPNode(ctx, a, "n3", white))
	nodes, err := db.PEPNodes(ctx, a)
	must(t, err)
	if len(nodes) != 3 || nodes[0].Name != "n1" || nodes[2].Name != "n3" || nodes[2].Config != white {
		t.Fatalf("nodes %+v", nodes)
	}
	must(t, db.DeletePEPNode(ctx, a, "n1"))
	wantPEPNotFound(t, "delete again", db.DeletePEPNode(ctx, a, "n1"))
	_, err = db.PEPNode(ctx, a, "n1")
	wantPEPNotFound(t, "deleted node", err)
	// A node made again starts empty.
	must(t, db.PutPEPNode(ctx, a, "n1", pubsub.Default()))
	items, err := db.PEPItems(ctx, a, "n1", nil, 0)
	must(t, err)
	if len(items) != 0 {
		t.Fatalf("recreated node has %v", itemIDs(items))
	}
	items, err = db.PEPItems(ctx, b, "n1", nil, 0)
	must(t, err)
	if got := itemIDs(items); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("other owner's items %v", got)
	}
}

// Concurrent publishes to one node keep at most max_items, all distinct,
// and the node is created once.
func testPEPConcurrentPublish(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, node = "+15550002021", "urn:x:many"
	c := pubsub.Default()
	c.MaxItems = 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			_, made, err := db.PublishPEPItem(ctx, owner, node, c, pubsub.Item{ID: fmt.Sprint(i), Payload: []byte(`<p xmlns="urn:p"/>`)})
			if err != nil {
				errs <- err
				return
			}
			if made {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	items, err := db.PEPItems(ctx, owner, node, nil, 0)
	must(t, err)
	if len(items) != 5 || created != 1 {
		t.Fatalf("%d items %v, created %d times", len(items), itemIDs(items), created)
	}
}

// A deleted or wiped account's nodes and items go with it.
func testPEPGoesWithAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	for _, n := range []auth.Number{"+15550002031", "+15550002032"} {
		creds, err := auth.NewCredentials("pw")
		must(t, err)
		_, err = db.SetCredentials(ctx, n, creds)
		must(t, err)
		_, _, err = db.PublishPEPItem(ctx, string(n), "urn:x", pubsub.Default(), pubsub.Item{ID: "1", Payload: []byte(`<p xmlns="urn:p"/>`)})
		must(t, err)
		must(t, db.SubscribePEP(ctx, string(n), "urn:x", "+15550002099@example.com/r"))
	}
	must(t, db.DeleteAccount(ctx, "+15550002031"))
	must(t, db.WipeAccountData(ctx, "+15550002032"))
	for _, n := range []string{"+15550002031", "+15550002032"} {
		nodes, err := db.PEPNodes(ctx, n)
		must(t, err)
		_, err = db.PEPItems(ctx, n, "urn:x", nil, 0)
		if len(nodes) != 0 || !errors.Is(err, pubsub.ErrNotFound) {
			t.Fatalf("%s: nodes %v, items err %v", n, nodes, err)
		}
		if subs, err := db.PEPSubscriptions(ctx, n, ""); err != nil || len(subs) != 0 {
			t.Fatalf("%s: subscriptions %v, %v", n, subs, err)
		}
	}
}

// Explicit subscriptions last, are idempotent, need the node, and go with
// the node.
func testPEPSubscriptions(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, a, b = "+15550002041", "+15550002042@example.com", "+15550002043@example.com/phone"
	wantPEPNotFound(t, "subscribe to no node", db.SubscribePEP(ctx, owner, "urn:none", a))
	for _, node := range []string{"urn:x", "urn:y"} {
		must(t, db.PutPEPNode(ctx, owner, node, pubsub.Default()))
	}
	must(t, db.SubscribePEP(ctx, owner, "urn:x", a))
	must(t, db.SubscribePEP(ctx, owner, "urn:x", a)) // again: still one
	must(t, db.SubscribePEP(ctx, owner, "urn:x", b))
	must(t, db.SubscribePEP(ctx, owner, "urn:y", a))
	all, err := db.PEPSubscriptions(ctx, owner, "")
	must(t, err)
	want := []pubsub.Subscription{{Node: "urn:x", JID: a}, {Node: "urn:x", JID: b}, {Node: "urn:y", JID: a}}
	if !slices.Equal(all, want) {
		t.Fatalf("subscriptions %v, want %v", all, want)
	}
	if x, err := db.PEPSubscriptions(ctx, owner, "urn:y"); err != nil || !slices.Equal(x, want[2:]) {
		t.Fatalf("subscriptions to urn:y %v, %v", x, err)
	}
	if other, err := db.PEPSubscriptions(ctx, "+15550002044", ""); err != nil || len(other) != 0 {
		t.Fatalf("another owner's subscriptions %v, %v", other, err)
	}
	must(t, db.UnsubscribePEP(ctx, owner, "urn:x", b))
	wantPEPNotFound(t, "unsubscribe again", db.UnsubscribePEP(ctx, owner, "urn:x", b))
	must(t, db.DeletePEPNode(ctx, owner, "urn:x"))
	must(t, db.PutPEPNode(ctx, owner, "urn:x", pubsub.Default()))
	all, err = db.PEPSubscriptions(ctx, owner, "")
	must(t, err)
	if !slices.Equal(all, want[2:]) {
		t.Fatalf("after deleting urn:x: %v, want %v", all, want[2:])
	}
}
