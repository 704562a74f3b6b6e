package mam

import (
	"context"
	"sync"
	"testing"
	"time"

	"dialtone/archive"
	"dialtone/xmppd/mod/internal/modtest"
)

// gatedStore is an archive store whose writes wait for the gate to open,
// and which records what it wrote, batch by batch.
type gatedStore struct {
	archive.Store // not used
	gate          chan struct{}
	mu            sync.Mutex
	batches       [][]int64
}

func (g *gatedStore) AppendArchive(ctx context.Context, msgs []archive.Message) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	g.mu.Lock()
	g.batches = append(g.batches, ids)
	g.mu.Unlock()
	return nil
}

func (g *gatedStore) ArchivePrefs(context.Context, string) (archive.Prefs, error) {
	return archive.Prefs{Default: "always"}, nil
}

func (g *gatedStore) written() (ids []int64, batches int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.batches {
		ids = append(ids, b...)
	}
	return ids, len(g.batches)
}

const owner = "+821012345678"

// startQueue runs a module's writer over a gated store, with the
// modtest router (owner is an account there).
func startQueue(t *testing.T, cfg Config) (*Module, *gatedStore) {
	t.Helper()
	g := &gatedStore{gate: make(chan struct{})}
	cfg.Store = g
	m := New(cfg)
	m.r = modtest.NewRouter("localhost", owner+"@localhost")
	m.domain = "localhost"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.write(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-g.gate:
		default:
			close(g.gate)
		}
		<-done
	})
	return m, g
}

func msg(id int64) item {
	return item{msg: archive.Message{Owner: owner, ID: id, With: "+821087654321@localhost", Stanza: []byte("<message/>")}}
}

// A full queue holds the sender until the writer takes it; a sender
// whose context ends first is told no, and its message is not counted
// as archived. What was queued is written in order, in batches of at most
// BatchSize, and a flush returns once it is.
func TestQueueBoundedInOrder(t *testing.T) {
	m, g := startQueue(t, Config{QueueSize: 4, BatchSize: 3, Linger: -1})
	ctx := context.Background()
	// The writer takes the first message and waits at the gate with it
	// (it counts against the bound until committed); three more fill the
	// queue.
	m.enqueue(ctx, msg(1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.qmu.Lock()
		n := len(m.queued)
		m.qmu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the first message")
		}
		time.Sleep(time.Millisecond)
	}
	for id := int64(2); id <= 4; id++ {
		m.enqueue(ctx, msg(id))
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	m.enqueue(short, msg(6))
	cancel()
	if _, failed := m.failed.Load(int64(6)); !failed {
		t.Fatal("a message the full queue refused is not marked as not archived")
	}
	// A sender waiting for room gets it once the writer committed what
	// it took.
	queued := make(chan struct{})
	go func() { m.enqueue(ctx, msg(5)); m.enqueue(ctx, msg(7)); close(queued) }()
	close(g.gate)
	select {
	case <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("a sender waiting for room never got it")
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := m.flush(fctx); err != nil {
		t.Fatal(err)
	}
	ids, batches := g.written()
	want := []int64{1, 2, 3, 4, 5, 7}
	if len(ids) != len(want) {
		t.Fatalf("written %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("written %v, want %v", ids, want)
		}
	}
	if batches < 3 { // [1], then [2 3 4] (BatchSize 3), then [5 7] or [5] [7]
		t.Fatalf("%d batches for %v with BatchSize 3", batches, ids)
	}
	if p := m.pending.Load(); p != 0 {
		t.Fatalf("pending %d after the flush", p)
	}
}

// A flush cuts the writer's linger short: a query finds what was routed
// before it without waiting the linger out.
func TestFlushCutsLingerShort(t *testing.T) {
	m, g := startQueue(t, Config{Linger: time.Hour})
	close(g.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for id := int64(1); id <= 3; id++ {
		m.enqueue(ctx, msg(id))
	}
	if err := m.flush(ctx); err != nil {
		t.Fatalf("flush: %v (the linger was not cut short)", err)
	}
	if ids, _ := g.written(); len(ids) != 3 {
		t.Fatalf("written %v", ids)
	}
}

// The arrays a burst grew are kept while rounds use them and given back
// once the writer has been quiet.
func TestQueueArraysGivenBackWhenQuiet(t *testing.T) {
	// Restored after the writer stops (cleanups run last first).
	was := quietAfter
	t.Cleanup(func() { quietAfter = was })
	quietAfter = 50 * time.Millisecond
	m, g := startQueue(t, Config{Linger: -1})
	close(g.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.qmu.Lock() // the burst queues while the writer waits for the lock
	for id := int64(1); id <= 5000; id++ {
		m.queued = append(m.queued, msg(id))
	}
	m.pending.Add(5000)
	m.qmu.Unlock()
	signal(m.ready)
	if err := m.flush(ctx); err != nil {
		t.Fatal(err)
	}
	spare := func() int {
		m.qmu.Lock()
		defer m.qmu.Unlock()
		return cap(m.spare)
	}
	for cap := spare(); cap != 0; cap = spare() {
		if ctx.Err() != nil {
			t.Fatalf("the writer still keeps an array of %d items", cap)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ids, _ := g.written(); len(ids) != 5000 {
		t.Fatalf("%d written", len(ids))
	}
}
