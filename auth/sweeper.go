package auth

import (
	"context"
	"log/slog"
	"time"
)

// maxSweepInterval is the longest wait between two sweeps (SPEC.md
// "Accounts": at least every TTL/4, and at least hourly).
const maxSweepInterval = time.Hour

// Releaser is the store the Sweeper releases accounts from. Implemented by
// package storage.
type Releaser interface {
	// ReleaseUnclaimed deletes the unclaimed accounts touched (last texted
	// a password or sent a message) before touchedBefore, with everything
	// they own, batch per transaction, and returns their numbers.
	ReleaseUnclaimed(ctx context.Context, touchedBefore time.Time, batch int) (released []Number, err error)
}

// Sweeper releases unclaimed accounts TTL after they were last touched
// (XMPPD_UNCLAIMED_ACCOUNT_TTL). Set the fields before Run; a zero TTL
// releases nothing.
type Sweeper struct {
	Store Releaser
	TTL   time.Duration
	// Batch is how many accounts one transaction releases; 0: the store's default.
	Batch int
	// OnRelease is called for each released account (the daemon closes its
	// sessions, which exist only in a race with the release); nil: nothing.
	OnRelease func(ctx context.Context, n Number)
	// Log gets a line per sweep that released something, and failures;
	// nil: slog.Default().
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Interval is the time between two sweeps of Run: TTL/4, at most an hour.
func (s *Sweeper) Interval() time.Duration {
	return min(s.TTL/4, maxSweepInterval)
}

// Run sweeps at once and then every Interval until ctx is done. With a zero
// TTL it returns at once.
func (s *Sweeper) Run(ctx context.Context) {
	if s.TTL <= 0 {
		return
	}
	t := time.NewTicker(max(s.Interval(), time.Millisecond))
	defer t.Stop()
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("unclaimed account sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce releases the unclaimed accounts not touched for TTL and
// reports how many. Accounts released before an error are reported too.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	if s.TTL <= 0 {
		return 0, nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	released, err := s.Store.ReleaseUnclaimed(ctx, now().Add(-s.TTL), s.Batch)
	if s.OnRelease != nil {
		for _, n := range released {
			s.OnRelease(ctx, n)
		}
	}
	if len(released) > 0 {
		s.log().Info("unclaimed accounts released", "count", len(released), "ttl", s.TTL)
	}
	return len(released), err
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
