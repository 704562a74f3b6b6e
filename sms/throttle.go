package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"dialtone/auth"
)

// Reasons a password request is refused, the label values of
// sms_password_throttled_total.
const (
	ReasonInterval  = "interval"   // XMPPD_PASSWORD_SMS_INTERVAL: too soon after the last one to the number
	ReasonPerDay    = "per_day"    // XMPPD_PASSWORD_SMS_PER_DAY: the number's daily cap
	ReasonPerIP     = "per_ip"     // XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR: the client's hourly cap
	ReasonPerPrefix = "per_prefix" // XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR: the number range's hourly cap
)

// ThrottledError refuses a password request over one of the limits. The
// HTTP API answers it with 429 and Retry-After.
type ThrottledError struct {
	// RetryAfter is how long until the same request would pass this limit:
	// until the oldest event it counted leaves the limit's window.
	RetryAfter time.Duration
	// Reason is one of the Reason constants.
	Reason string
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("sms: too many password requests (%s); retry in %s", e.Reason, e.RetryAfter.Round(time.Second))
}

// Windows of the limits.
const (
	day  = 24 * time.Hour
	hour = time.Hour
	// maxWindowKeys bounds the in-memory counters (per IP, per prefix):
	// each holds at most its limit of times, about 24 bytes apiece.
	maxWindowKeys = 100000
	// prefixDigitsHidden is how many trailing digits the per-prefix limit
	// ignores: one prefix is a range of 10,000 numbers.
	prefixDigitsHidden = 4
)

// numberRetry applies the per-number limits to the times password SMS were
// queued for one number (oldest first, at least the last day's): it returns
// the reason and wait, or "" when a new one may go now. A zero interval or
// perDay is no limit.
func numberRetry(queued []time.Time, now time.Time, interval time.Duration, perDay int) (string, time.Duration) {
	if len(queued) == 0 {
		return "", 0
	}
	if interval > 0 {
		if next := queued[len(queued)-1].Add(interval); now.Before(next) {
			return ReasonInterval, next.Sub(now)
		}
	}
	if perDay > 0 {
		from := now.Add(-day)
		first, _ := slices.BinarySearchFunc(queued, from, func(t, from time.Time) int {
			if t.After(from) {
				return 1
			}
			return -1
		})
		inDay := queued[first:]
		if len(inDay) >= perDay {
			// The count drops below the cap when the perDay-th newest leaves.
			return ReasonPerDay, inDay[len(inDay)-perDay].Add(day).Sub(now)
		}
	}
	return "", 0
}

// window counts events per key in a sliding window, in memory, for at most
// capacity keys. It keeps no more than limit times per key, which is
// all that deciding and RetryAfter need. Safe for concurrent use.
type window struct {
	span     time.Duration
	limit    int // 0: no limit, nothing is kept
	capacity int // keys at most; 0: maxWindowKeys
	// shared, when set, keeps the events in the store instead, as limits
	// of kind, so that every node of a cluster counts them.
	shared auth.SharedLimits
	kind   string

	mu     sync.Mutex
	events map[string][]time.Time // oldest first
}

// take counts one event for key at now unless the key already has limit
// events in the window; then it returns false and the time until the
// oldest of them leaves it. A refused event is not counted, so the wait
// it answers is exact. Only a shared window fails (its store did).
func (w *window) take(ctx context.Context, key string, now time.Time) (bool, time.Duration, error) {
	if w.limit <= 0 {
		return true, 0, nil
	}
	if w.shared != nil {
		return w.takeShared(ctx, key, now)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.events == nil {
		w.events = make(map[string][]time.Time)
	}
	ev := w.live(key, now)
	if ok, wait := w.admits(ev, now); !ok {
		return false, wait, nil
	}
	if _, ok := w.events[key]; !ok {
		w.makeRoom(now)
	}
	w.events[key] = append(ev, now)
	return true, 0, nil
}

// admits decides on one more event at now given the live ones.
func (w *window) admits(live []time.Time, now time.Time) (bool, time.Duration) {
	if len(live) >= w.limit {
		return false, live[len(live)-w.limit].Add(w.span).Sub(now)
	}
	return true, 0
}

// takeShared is take on the store: the key's events are read, decided on
// and written back under the store's lock of the key.
func (w *window) takeShared(ctx context.Context, key string, now time.Time) (ok bool, wait time.Duration, err error) {
	err = w.shared.UpdateLimit(ctx, w.kind, key, now, func(state []byte) (auth.LimitState, error) {
		ev := w.liveShared(state, now)
		if ok, wait = w.admits(ev, now); ok {
			ev = append(ev, now)
		}
		return w.stateOf(ev)
	})
	if err != nil {
		return false, 0, fmt.Errorf("sms: %s limit: %w", w.kind, err)
	}
	return ok, wait, nil
}

// liveShared decodes the events a shared window stored, keeping those
// still in the window. Unreadable state counts as none.
func (w *window) liveShared(state []byte, now time.Time) []time.Time {
	var micros []int64
	if state != nil && json.Unmarshal(state, &micros) != nil {
		micros = nil
	}
	from := now.Add(-w.span)
	ev := make([]time.Time, 0, len(micros)+1)
	for _, m := range micros {
		if t := time.UnixMicro(m); t.After(from) {
			ev = append(ev, t)
		}
	}
	return ev
}

// stateOf encodes events for the store: nil (no row) when none are left.
func (w *window) stateOf(ev []time.Time) (auth.LimitState, error) {
	if len(ev) == 0 {
		return auth.LimitState{}, nil
	}
	micros := make([]int64, len(ev))
	for i, t := range ev {
		micros[i] = t.UnixMicro()
	}
	b, err := json.Marshal(micros)
	return auth.LimitState{State: b, Expires: ev[len(ev)-1].Add(w.span)}, err
}

// undo takes back the event that take counted for key at t, when what it
// was counted for did not happen after all.
func (w *window) undo(ctx context.Context, key string, t time.Time) {
	if w.limit <= 0 {
		return
	}
	if w.shared != nil {
		// Best effort: an event not taken back only ends its window early.
		_ = w.shared.UpdateLimit(ctx, w.kind, key, t, func(state []byte) (auth.LimitState, error) {
			ev := w.liveShared(state, t.Add(-time.Microsecond))
			for i := len(ev) - 1; i >= 0; i-- {
				if ev[i].Equal(t.Truncate(time.Microsecond)) {
					ev = slices.Delete(ev, i, i+1)
					break
				}
			}
			return w.stateOf(ev)
		})
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events[key]
	for i := len(ev) - 1; i >= 0; i-- {
		if ev[i].Equal(t) {
			w.events[key] = slices.Delete(ev, i, i+1)
			break
		}
	}
	if len(w.events[key]) == 0 {
		delete(w.events, key)
	}
}

// live returns the events of key still in the window, dropping the rest.
// Called with mu held.
func (w *window) live(key string, now time.Time) []time.Time {
	ev := w.events[key]
	from := now.Add(-w.span)
	i := 0
	for i < len(ev) && !ev[i].After(from) {
		i++
	}
	if i > 0 {
		ev = slices.Delete(ev, 0, i)
		if len(ev) == 0 {
			delete(w.events, key)
			return nil
		}
		w.events[key] = ev
	}
	return ev
}

// makeRoom keeps the map under maxWindowKeys before a new key is added:
// first keys whose events all left the window, then the tenth whose newest
// event is oldest. Called with mu held.
func (w *window) makeRoom(now time.Time) {
	capacity := w.capacity
	if capacity <= 0 {
		capacity = maxWindowKeys
	}
	if len(w.events) < capacity {
		return
	}
	from := now.Add(-w.span)
	for k, ev := range w.events {
		if !ev[len(ev)-1].After(from) {
			delete(w.events, k)
		}
	}
	if len(w.events) < capacity {
		return
	}
	type aged struct {
		key  string
		last time.Time
	}
	all := make([]aged, 0, len(w.events))
	for k, ev := range w.events {
		all = append(all, aged{k, ev[len(ev)-1]})
	}
	slices.SortFunc(all, func(a, b aged) int { return a.last.Compare(b.last) })
	for _, a := range all[:max(1, len(all)/10)] {
		delete(w.events, a.key)
	}
}

// ipKey is the per-IP counter's key for a client address: an IPv6 client
// is counted by its /64, the block one subscriber usually gets; anything
// that does not parse is counted as it is written.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// prefixKey is the per-prefix counter's key: the number without its last
// digits, so that one key covers a range of consecutive numbers.
func prefixKey(n string) string {
	if len(n) <= prefixDigitsHidden+1 {
		return n
	}
	return n[:len(n)-prefixDigitsHidden]
}

// NewThrottledCounter makes and registers with reg (nil: not registered)
// the counter sms_password_throttled_total{reason} for Passwords.Throttled,
// with every reason present from the start.
func NewThrottledCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sms_password_throttled_total",
		Help: "Password requests refused by a limit, by reason (interval, per_day, per_ip, per_prefix).",
	}, []string{"reason"})
	for _, r := range []string{ReasonInterval, ReasonPerDay, ReasonPerIP, ReasonPerPrefix} {
		c.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
