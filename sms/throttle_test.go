package sms

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
)

var t0 = time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)

func TestNumberRetry(t *testing.T) {
	at := func(d ...time.Duration) []time.Time {
		var out []time.Time
		for _, x := range d {
			out = append(out, t0.Add(x))
		}
		return out
	}
	tests := []struct {
		name     string
		queued   []time.Time
		interval time.Duration
		perDay   int
		reason   string
		wait     time.Duration
	}{
		{name: "nothing queued", interval: 2 * time.Minute, perDay: 5},
		{name: "inside the interval", queued: at(-30 * time.Second), interval: 2 * time.Minute, perDay: 5,
			reason: ReasonInterval, wait: 90 * time.Second},
		{name: "interval passed", queued: at(-2 * time.Minute), interval: 2 * time.Minute, perDay: 5},
		{name: "no interval", queued: at(-time.Second), perDay: 5},
		{name: "day full", queued: at(-20*time.Hour, -10*time.Hour, -5*time.Hour), interval: time.Minute, perDay: 3,
			reason: ReasonPerDay, wait: 4 * time.Hour},
		{name: "oldest left the day", queued: at(-25*time.Hour, -10*time.Hour, -5*time.Hour), interval: time.Minute, perDay: 3},
		{name: "exactly a day old is out", queued: at(-24*time.Hour, -10*time.Hour, -5*time.Hour), perDay: 3},
		// More than the cap (xmppctl is not limited): wait until the count
		// drops below it, not until the oldest leaves.
		{name: "over the cap", queued: at(-23*time.Hour, -22*time.Hour, -3*time.Hour, -2*time.Hour), perDay: 2,
			reason: ReasonPerDay, wait: 21 * time.Hour},
		{name: "no daily cap", queued: at(-3*time.Hour, -2*time.Hour, -time.Hour), interval: time.Minute},
		{name: "interval first", queued: at(-20*time.Hour, -time.Second), interval: time.Minute, perDay: 2,
			reason: ReasonInterval, wait: 59 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, wait := numberRetry(tt.queued, t0, tt.interval, tt.perDay)
			if reason != tt.reason || wait != tt.wait {
				t.Errorf("numberRetry = %q %v, want %q %v", reason, wait, tt.reason, tt.wait)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	testWindow(t, &window{span: time.Hour, limit: 3})
}

// The shared window decides as the one in memory; its state round-trips
// through the store's encoding (storetest runs it on both real stores).
func TestWindowShared(t *testing.T) {
	testWindow(t, &window{span: time.Hour, limit: 3, shared: &memLimits{}, kind: "test"})
}

func testWindow(t *testing.T, w *window) {
	take := func(key string, at time.Duration, wantOK bool, wantWait time.Duration) {
		t.Helper()
		ok, wait, err := w.take(t.Context(), key, t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		if ok != wantOK || wait != wantWait {
			t.Fatalf("take(%s, +%v) = %v %v, want %v %v", key, at, ok, wait, wantOK, wantWait)
		}
	}
	take("a", 0, true, 0)
	take("a", 10*time.Minute, true, 0)
	take("a", 20*time.Minute, true, 0)
	take("b", 20*time.Minute, true, 0) // per key
	take("a", 30*time.Minute, false, 30*time.Minute)
	// A refused event is not counted: the wait stays exact.
	take("a", 59*time.Minute, false, time.Minute)
	take("a", time.Hour, true, 0) // the first left the window
	take("a", time.Hour+time.Second, false, 10*time.Minute-time.Second)

	// undo takes back one event.
	w.undo(t.Context(), "a", t0.Add(time.Hour))
	take("a", time.Hour+2*time.Second, true, 0)
	w.undo(t.Context(), "b", t0.Add(20*time.Minute))
	if _, ok := w.events["b"]; ok {
		t.Error("a key without events is kept")
	}
	if m, ok := w.shared.(*memLimits); ok && m.rows["test b"] != nil {
		t.Error("a shared key without events is kept")
	}

	// No limit: nothing is counted or kept.
	free := &window{span: time.Hour}
	for range 100 {
		if ok, _, _ := free.take(t.Context(), "a", t0); !ok {
			t.Fatal("a window without limit refused")
		}
	}
	if len(free.events) != 0 {
		t.Errorf("a window without limit keeps %d keys", len(free.events))
	}
}

// The map is bounded: expired keys go first, then the least recent.
func TestWindowBounded(t *testing.T) {
	w := &window{span: time.Hour, limit: 2, capacity: 100}
	for i := range 100 {
		w.take(t.Context(), fmt.Sprint("old", i), t0)
	}
	w.take(t.Context(), "old0", t0.Add(2*time.Minute)) // old0 is the most recent now
	// An hour later all but old0 have expired and make room.
	w.take(t.Context(), "new", t0.Add(time.Hour+time.Minute))
	if len(w.events) != 2 {
		t.Fatalf("%d keys after expiry, want old0 and new", len(w.events))
	}
	for i := range 200 {
		w.take(t.Context(), fmt.Sprint("k", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	if n := len(w.events); n > 100 {
		t.Fatalf("%d keys, capacity 100", n)
	}
	if _, ok := w.events["k199"]; !ok {
		t.Error("the newest key was evicted")
	}
	if _, ok := w.events["old0"]; ok {
		t.Error("the least recent key was kept")
	}
}

func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":              "192.0.2.7",
		"::ffff:192.0.2.7":       "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":   "2001:db8:1:2::/64",
		"2001:db8:1:3::1":        "2001:db8:1:3::/64",
		"fe80::1%eth0":           "fe80::/64",
		"not an address":         "not an address",
		"":                       "",
		"192.0.2.7:5280":         "192.0.2.7:5280",
		"2001:db8::1234:5678:9a": "2001:db8::/64",
	} {
		if got := ipKey(in); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrefixKey(t *testing.T) {
	for in, want := range map[string]string{
		"+821012345678": "+82101234",
		"+12025550123":  "+1202555",
		"+1234":         "+1234",
	} {
		if got := prefixKey(in); got != want {
			t.Errorf("prefixKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// memLimits is an auth.SharedLimits in memory, for the shared mode's logic.
type memLimits struct {
	mu   sync.Mutex
	rows map[string]*auth.LimitState
}

func (m *memLimits) UpdateLimit(_ context.Context, kind, key string, now time.Time, fn func([]byte) (auth.LimitState, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows == nil {
		m.rows = map[string]*auth.LimitState{}
	}
	var state []byte
	if r := m.rows[kind+" "+key]; r != nil && r.Expires.After(now) {
		state = r.State
	}
	next, err := fn(state)
	if err != nil {
		return err
	}
	if next.State == nil {
		delete(m.rows, kind+" "+key)
	} else {
		m.rows[kind+" "+key] = &next
	}
	return nil
}

func (m *memLimits) HeldLimits(context.Context, string, time.Time, int) (map[string]time.Time, error) {
	return nil, nil
}
func (m *memLimits) ClearLimits(context.Context, string, []string) error { return nil }
func (m *memLimits) PruneLimits(context.Context, time.Time) error        { return nil }
