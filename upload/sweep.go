package upload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// maxSweepInterval is the longest wait between two sweeps (SPEC.md
// "Files and calls": at least hourly).
const maxSweepInterval = time.Hour

// sweepBatch is how many slots one store call removes.
const sweepBatch = 500

// reservationGrace is how long after its PUT URL expired a slot that was
// never stored is kept: a PUT that began in time may still be streaming
// a large file.
const reservationGrace = 24 * time.Hour

// Interval is the time between two sweeps of Run: a quarter of the expiry,
// at most an hour.
func (s *Service) Interval() time.Duration {
	if s.Expiry <= 0 {
		return maxSweepInterval
	}
	return max(min(s.Expiry/4, maxSweepInterval), time.Millisecond)
}

// Run sweeps at once and then every Interval until ctx is done.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval())
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("upload sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep removes the files stored longer ago than Expiry, the slots never
// stored whose PUT URL expired more than a day ago, and the directories
// that no slot in the store has any more (their account was deleted, by
// xmppctl say, or the server stopped half-way through a PUT). It returns
// how many slots and directories it removed.
func (s *Service) Sweep(ctx context.Context) (removed int, err error) {
	now := s.now()
	var storedBefore time.Time
	if s.Expiry > 0 {
		storedBefore = now.Add(-s.Expiry)
	}
	for {
		recs, err := s.Store.ExpireUploads(ctx, storedBefore, now.Add(-reservationGrace), sweepBatch)
		if err != nil {
			return removed, fmt.Errorf("upload: sweep: %w", err)
		}
		for _, r := range recs {
			if err := os.RemoveAll(s.slotDir(r)); err != nil {
				return removed, fmt.Errorf("upload: sweep: %w", err)
			}
		}
		removed += len(recs)
		if len(recs) < sweepBatch {
			break
		}
	}
	orphans, err := s.removeOrphans(ctx)
	removed += orphans
	if removed > 0 {
		s.log().Info("upload sweep", "removed", removed)
	}
	return removed, err
}

// removeOrphans removes the slot directories whose slot is not in the
// store, and owner directories left empty. The disk is listed before the
// store is asked: a slot is in the store before its directory is made, so
// a directory seen here without its slot has none for good.
func (s *Service) removeOrphans(ctx context.Context) (removed int, err error) {
	owners, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // nothing uploaded yet
	}
	if err != nil {
		return 0, fmt.Errorf("upload: sweep: %w", err)
	}
	for _, o := range owners {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !o.IsDir() {
			continue
		}
		dir := filepath.Join(s.Dir, o.Name())
		slots, err := os.ReadDir(dir)
		if err != nil {
			return removed, fmt.Errorf("upload: sweep: %w", err)
		}
		ids, err := s.Store.UploadIDs(ctx, o.Name())
		if err != nil {
			return removed, fmt.Errorf("upload: sweep: %w", err)
		}
		known := make(map[string]bool, len(ids))
		for _, id := range ids {
			known[id] = true
		}
		for _, slot := range slots {
			if known[slot.Name()] {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, slot.Name())); err != nil {
				return removed, fmt.Errorf("upload: sweep: %w", err)
			}
			removed++
		}
		if len(ids) == 0 {
			os.Remove(dir) // fails, as it should, if a PUT just made a slot in it
		}
	}
	return removed, nil
}

// RemoveOwner removes every file of owner from disk: the account was
// deleted, released or recycled, and the store's slots of it with it.
func (s *Service) RemoveOwner(owner string) error {
	if !safeOwner(owner) {
		return nil // it can have no files
	}
	if err := os.RemoveAll(s.ownerDir(owner)); err != nil {
		return fmt.Errorf("upload: remove the files of %s: %w", owner, err)
	}
	return nil
}
