package auth

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeReleaser records the calls and releases what it is told to.
type fakeReleaser struct {
	mu       sync.Mutex
	calls    []time.Time
	batches  []int
	release  []Number
	err      error
	notified chan struct{}
}

func (f *fakeReleaser) ReleaseUnclaimed(_ context.Context, before time.Time, batch int) ([]Number, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, before)
	f.batches = append(f.batches, batch)
	if f.notified != nil {
		select {
		case f.notified <- struct{}{}:
		default:
		}
	}
	out := f.release
	f.release = nil
	return out, f.err
}

func (f *fakeReleaser) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestSweepOnce(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	store := &fakeReleaser{release: []Number{"+821011111111", "+821022222222"}}
	var released []Number
	s := &Sweeper{
		Store: store, TTL: 168 * time.Hour, Batch: 500,
		OnRelease: func(_ context.Context, n Number) { released = append(released, n) },
		Log:       slog.New(slog.DiscardHandler),
		Now:       func() time.Time { return now },
	}
	n, err := s.SweepOnce(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("SweepOnce = %d, %v; want 2, nil", n, err)
	}
	if !store.calls[0].Equal(now.Add(-168*time.Hour)) || store.batches[0] != 500 {
		t.Errorf("released accounts touched before %v in batches of %d; want %v, 500", store.calls[0], store.batches[0], now.Add(-168*time.Hour))
	}
	if !slices.Equal(released, []Number{"+821011111111", "+821022222222"}) {
		t.Errorf("OnRelease got %v", released)
	}

	// Accounts released before a failure are reported and closed too.
	store.release, store.err = []Number{"+821033333333"}, errors.New("store down")
	n, err = s.SweepOnce(context.Background())
	if n != 1 || !errors.Is(err, store.err) || len(released) != 3 {
		t.Errorf("SweepOnce with a failure = %d, %v (released %v)", n, err, released)
	}

	// A zero TTL releases nothing and does not ask the store.
	s.TTL = 0
	if n, err := s.SweepOnce(context.Background()); n != 0 || err != nil || store.callCount() != 2 {
		t.Errorf("TTL 0: %d, %v, %d calls", n, err, store.callCount())
	}
}

func TestSweeperInterval(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		168 * time.Hour:  time.Hour, // at least hourly
		2 * time.Hour:    30 * time.Minute,
		time.Minute:      15 * time.Second,
		4 * time.Hour:    time.Hour,
		10 * time.Second: 2500 * time.Millisecond,
	} {
		if got := (&Sweeper{TTL: ttl}).Interval(); got != want {
			t.Errorf("Interval with TTL %v = %v, want %v", ttl, got, want)
		}
	}
}

func TestSweeperRun(t *testing.T) {
	store := &fakeReleaser{notified: make(chan struct{}, 1)}
	s := &Sweeper{Store: store, TTL: 40 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for range 3 { // at once, then every TTL/4
		select {
		case <-store.notified:
		case <-time.After(5 * time.Second):
			t.Fatal("no sweep")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	// With TTL 0 Run returns at once without sweeping.
	idle := &fakeReleaser{}
	(&Sweeper{Store: idle}).Run(context.Background())
	if idle.callCount() != 0 {
		t.Error("Run with TTL 0 swept")
	}
}
