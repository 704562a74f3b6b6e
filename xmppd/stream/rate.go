package stream

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rateBurst is how many seconds' worth of bytes a connection may send at
// once before its rate applies (SPEC "Limits on what clients send").
const rateBurst = 10

// Rate is a token bucket on the bytes one connection sends
// (XMPPD_C2S_RATE, XMPPD_S2S_RATE). It is charged by the connection's
// reader after each read and makes that reader wait while it is in debt:
// a peer over its rate is slowed down by TCP's own flow control, never
// disconnected, and loses nothing. Only the reader's goroutine uses it.
type Rate struct {
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
	waited prometheus.Counter // seconds spent waiting

	counted atomic.Int64 // bytes charged in all

	now   func() time.Time
	sleep func(time.Duration)
}

// NewRate returns a bucket for rate bytes per second, full; nil (no
// limit) when rate <= 0.
func NewRate(rate int, waited prometheus.Counter) *Rate {
	if rate <= 0 {
		return nil
	}
	r := &Rate{
		rate:   float64(rate),
		burst:  float64(rate) * rateBurst,
		waited: waited,
		now:    time.Now,
		sleep:  time.Sleep,
	}
	r.tokens, r.last = r.burst, r.now()
	return r
}

// Take charges n bytes just read and waits while the bucket is in debt.
// One read is at most the reader's buffer, so one wait is short (16 ms at
// 64 KiB/s): a closing session is never held up for long.
func (r *Rate) Take(n int) {
	if r == nil {
		return
	}
	r.counted.Add(int64(n))
	now := r.now()
	r.tokens = min(r.burst, r.tokens+now.Sub(r.last).Seconds()*r.rate)
	r.last = now
	r.tokens -= float64(n)
	if r.tokens >= 0 {
		return
	}
	// The debt is paid off by the time the wait ends: the refill of the
	// next take counts the waited time from r.last.
	d := time.Duration(-r.tokens / r.rate * float64(time.Second))
	r.waited.Add(d.Seconds())
	r.sleep(d)
}

// Counted is how many bytes were charged in all.
func (r *Rate) Counted() int64 { return r.counted.Load() }
