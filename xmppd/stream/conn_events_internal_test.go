package stream

import (
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// TestConnEvents: Closing and Done are closed when the stream starts
// closing and when its final write finished, whether they were asked for
// before or after; Close is first once among concurrent callers, and its
// condition is the one EndCondition reports.
func TestConnEvents(t *testing.T) {
	c := NewConn(NewTCP(readingPeer(t), 1<<16), &Config{WriteTimeout: 10 * time.Second, QueueSize: 8, QueueBytes: 1 << 16, Metrics: NewMetrics(prometheus.NewRegistry())})
	if c.killCh != nil || c.doneCh != nil {
		t.Fatal("a new stream has event channels: nobody waits yet")
	}
	closing, done := c.Closing(), c.Done()
	select {
	case <-closing:
		t.Fatal("Closing closed before Close")
	case <-done:
		t.Fatal("Done closed before the end was written")
	default:
	}
	if c.Closed() || c.EndCondition() != "" {
		t.Fatal("closed before Close")
	}
	c.Start()
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 8 {
		wg.Go(func() {
			if c.Close("policy-violation", "") {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firsts != 1 {
		t.Fatalf("%d Close calls were first, want 1", firsts)
	}
	if !c.Closed() || c.EndCondition() != "policy-violation" {
		t.Fatalf("after Close: closed %v, condition %q", c.Closed(), c.EndCondition())
	}
	for name, ch := range map[string]<-chan struct{}{"Closing before": closing, "Closing after": c.Closing(), "Done before": done, "Done after": c.Done()} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not closed", name)
		}
	}
}

// TestConnSize: the stream stays in the 320-byte size class (each idle
// session has one).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 320 {
		t.Errorf("Conn is %d bytes, over the 320-byte class", n)
	}
}

// readingPeer is one end of a pipe whose other end reads everything,
// both closed when the test ends.
func readingPeer(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	return a
}
