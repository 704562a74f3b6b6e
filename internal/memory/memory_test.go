package memory

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestQuiet(t *testing.T) {
	const mib = 1 << 20
	live := uint64(80 * mib)
	for _, c := range []struct {
		name      string
		prev, cur Sample
		want      bool
	}{
		{"quiet with free heap", Sample{Allocs: 1000}, Sample{Allocs: 1000 + mib, Live: live, Free: 40 * mib}, true},
		{"busy", Sample{Allocs: 1000}, Sample{Allocs: 1000 + 3*mib, Live: live, Free: 40 * mib}, false},
		{"little free heap", Sample{Allocs: 1000}, Sample{Allocs: 1000, Live: live, Free: 9 * mib}, false},
		{"small heap", Sample{}, Sample{Live: 2 * mib, Free: 3 * mib}, false},
		{"counter went back", Sample{Allocs: 5000}, Sample{Allocs: 1000, Live: live, Free: 40 * mib}, false},
	} {
		if got := Quiet(c.prev, c.cur); got != c.want {
			t.Errorf("%s: Quiet = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestRead guards the metric names: a Go release without them would
// leave the heap it grew to kept for good.
func TestRead(t *testing.T) {
	keep := make([][]byte, 0, 64)
	for range 64 {
		keep = append(keep, make([]byte, 64<<10))
	}
	runtime.GC() // the live heap is the last collection's
	s := Read()
	if s.Allocs < 4<<20 || s.Live < 4<<20 {
		t.Fatalf("Read = %+v: the runtime's metrics are missing", s)
	}
	runtime.KeepAlive(keep)
}

// TestReturnerReturnsOnceQuiet runs the loop on samples the test hands
// it one at a time: busy periods return nothing, a quiet one returns,
// and a second quiet one within Gap does not.
func TestReturnerReturnsOnceQuiet(t *testing.T) {
	const mib = 1 << 20
	samples := make(chan Sample)
	freed := make(chan struct{}, 10)
	now := time.Unix(1000, 0)
	clock := make(chan time.Time, 1)
	clock <- now
	r := &Returner{Every: time.Millisecond, Gap: time.Minute,
		Read: func() Sample { return <-samples },
		Free: func() { freed <- struct{}{} },
		Now:  func() time.Time { t := <-clock; clock <- t; return t },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	allocs := uint64(0)
	feed := func(alloc uint64) {
		allocs += alloc
		select {
		case samples <- Sample{Allocs: allocs, Live: 64 * mib, Free: 32 * mib}:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop did not read")
		}
	}
	none := func(when string) {
		select {
		case <-freed:
			t.Fatalf("%s: returned", when)
		default:
		}
	}
	feed(0)        // the first sample
	feed(10 * mib) // busy
	feed(10 * mib) // busy: the next read is proof the last one was judged
	none("busy")
	feed(0) // quiet: returns, then reads again
	feed(0) // the read after the return
	select {
	case <-freed:
	case <-time.After(10 * time.Second):
		t.Fatal("quiet, and nothing returned")
	}
	feed(0) // quiet again, within Gap
	feed(0)
	none("within the gap")
	<-clock
	clock <- now.Add(2 * time.Minute)
	feed(0) // quiet, past Gap
	feed(0)
	select {
	case <-freed:
	case <-time.After(10 * time.Second):
		t.Fatal("quiet past the gap, and nothing returned")
	}
}
