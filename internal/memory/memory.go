// Package memory sets the Go runtime's memory policy of xmppd: how much
// headroom the collector leaves (XMPPD_GC_PERCENT, XMPPD_MEMORY_LIMIT) and
// giving back what a burst left behind once the server is quiet.
//
// Why the last: an idle session costs about 10 KiB of live heap, but the
// runtime keeps the heap it grew to during the logins (the heap goal is
// twice the live heap, and its scavenger keeps 10% over the goal), so
// that 5,000 idle sessions cost about 27 KiB each in RSS. A server whose
// sessions are mostly parked allocates little; there the headroom is
// never used, and it is given back.
package memory

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Apply sets the collector's GOGC (gcPercent) and the soft memory limit
// (limit bytes; 0: none). It is process-wide.
func Apply(gcPercent int, limit int64) {
	debug.SetGCPercent(gcPercent)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
}

// Sample is what the quiet check reads from the runtime.
type Sample struct {
	Allocs uint64 // bytes allocated since the start
	Live   uint64 // heap live at the last collection
	Free   uint64 // heap free and not yet given back to the system
}

// Quiet reports whether, between prev and cur, the server allocated so
// little that the free heap it keeps will not be used soon: less than a
// 32nd of the live heap, while that free heap is over an 8th of it (and
// over minFree, so a small heap is left alone).
func Quiet(prev, cur Sample) bool {
	const minFree = 4 << 20
	allocated := cur.Allocs - prev.Allocs
	return cur.Allocs >= prev.Allocs && allocated < cur.Live/32 && cur.Free > max(minFree, cur.Live/8)
}

var names = []string{"/gc/heap/allocs:bytes", "/gc/heap/live:bytes", "/memory/classes/heap/free:bytes"}

// Read samples the runtime.
func Read() Sample {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this Go release: nothing is ever quiet
		}
		return s[i].Value.Uint64()
	}
	return Sample{Allocs: v(0), Live: v(1), Free: v(2)}
}

// Returner gives the free heap back to the system when the server has
// been quiet for one period, at most once per Gap.
type Returner struct {
	Every time.Duration // how often it looks
	Gap   time.Duration // the least time between two returns
	Read  func() Sample // Read, or a test's
	Free  func()        // debug.FreeOSMemory (a collection, then the return), or a test's
	Now   func() time.Time
}

// NewReturner is the server's: it looks every 5 s and returns at most
// every 30 s, so the forced collections cost a quiet server at most two
// markings of its live heap per 30 s.
func NewReturner() *Returner {
	return &Returner{Every: 5 * time.Second, Gap: 30 * time.Second, Read: Read, Free: freeAll, Now: time.Now}
}

// freeAll collects twice before giving back: what the burst left in
// sync.Pools (TLS record and write buffers of 16 KiB) survives one
// collection.
func freeAll() {
	runtime.GC()
	debug.FreeOSMemory()
}

// Run looks until ctx is done.
func (r *Returner) Run(ctx context.Context) {
	t := time.NewTicker(r.Every)
	defer t.Stop()
	prev := r.Read()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := r.Read()
		if Quiet(prev, cur) && (last.IsZero() || r.Now().Sub(last) >= r.Gap) {
			r.Free()
			last = r.Now()
			cur = r.Read() // what the return itself allocated is not the server's
		}
		prev = cur
	}
}
