package phonebook

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"dialtone/auth"
)

// day is how long an account's count of numbers lasts from its first
// lookup.
const day = 24 * time.Hour

// sweepEvery is how often windows that ended are dropped.
const sweepEvery = time.Hour

// quota counts, per account, the distinct numbers it looked up in its
// current day (XMPPD_DISCOVERY_PER_DAY).
//
// It is kept in memory only, on purpose: counting distinct numbers needs
// the set of numbers an account asked about, and that set is its phone
// book, which must never be stored (SPEC.md). Even in memory it holds
// only 64-bit hashes under a seed made at start and never written
// anywhere, 8 bytes a number, at most PerDay of them per account. The
// price: a restart (or another node of a cluster) starts the counts
// afresh, which lets an account look up at most PerDay more numbers per
// restart, and restarts are the operator's.
type quota struct {
	seed maphash.Seed

	mu        sync.Mutex
	windows   map[string]*window // by the account's number
	lastSweep time.Time
}

// window is one account's day: when it started and the hashes of the
// numbers looked up since, sorted.
type window struct {
	start time.Time
	seen  []uint64
}

func newQuota() *quota {
	return &quota{seed: maphash.MakeSeed(), windows: make(map[string]*window)}
}

// admit reports whether account may look up numbers at now under limit
// (0: no limit), counting those it has not looked up in its day. All or
// nothing: a refused lookup counts no number.
func (q *quota) admit(account string, numbers []auth.Number, now time.Time, limit int) bool {
	if limit <= 0 {
		return true
	}
	hashes := make([]uint64, len(numbers))
	for i, n := range numbers {
		hashes[i] = maphash.String(q.seed, string(n))
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)

	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweep(now)
	w := q.windows[account]
	if w == nil || now.Sub(w.start) >= day || now.Before(w.start) {
		w = &window{start: now}
		q.windows[account] = w
	}
	fresh := 0
	for _, h := range hashes {
		if _, found := slices.BinarySearch(w.seen, h); !found {
			fresh++
		}
	}
	if len(w.seen)+fresh > limit {
		return false
	}
	if fresh > 0 {
		w.seen = mergeSorted(w.seen, hashes)
	}
	return true
}

// sweep drops the windows that ended, at most once per sweepEvery, so
// that accounts that stopped asking cost nothing. q.mu is held.
func (q *quota) sweep(now time.Time) {
	if now.Sub(q.lastSweep) < sweepEvery && !now.Before(q.lastSweep) {
		return
	}
	q.lastSweep = now
	for a, w := range q.windows {
		if now.Sub(w.start) >= day || now.Before(w.start) {
			delete(q.windows, a)
		}
	}
}

// used returns how many numbers account has looked up in its day (for
// tests).
func (q *quota) used(account string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.windows[account]; w != nil {
		return len(w.seen)
	}
	return 0
}

// mergeSorted returns the sorted union of two sorted sets, in a new
// slice.
func mergeSorted(a, b []uint64) []uint64 {
	out := make([]uint64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
