package stream

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The bucket lets a burst of ten seconds' worth through, then makes the
// reader wait as long as the rate says, and refills while it is idle.
func TestByteRate(t *testing.T) {
	if NewRate(0, nil) != nil {
		t.Fatal("rate 0 is no limit")
	}
	clock := time.Unix(1000, 0)
	var waited time.Duration
	r := NewRate(1000, prometheus.NewCounter(prometheus.CounterOpts{Name: "w"}))
	r.now = func() time.Time { return clock }
	r.sleep = func(d time.Duration) { waited += d; clock = clock.Add(d) }
	r.tokens, r.last = r.burst, clock
	for range 10 {
		r.Take(1000) // the burst
	}
	if waited != 0 {
		t.Fatalf("waited %v within the burst", waited)
	}
	r.Take(500)
	if waited != 500*time.Millisecond {
		t.Fatalf("waited %v for 500 bytes past the burst at 1000/s, want 500ms", waited)
	}
	// 20 s idle refill the bucket up to the burst, not beyond.
	clock = clock.Add(20 * time.Second)
	waited = 0
	for range 10 {
		r.Take(1000)
	}
	r.Take(1000)
	if waited != time.Second {
		t.Fatalf("after a long pause, waited %v for a burst and 1000 bytes, want 1s", waited)
	}
	if got := r.counted.Load(); got != 21500 {
		t.Fatalf("counted %d bytes, want 21500", got)
	}
}
