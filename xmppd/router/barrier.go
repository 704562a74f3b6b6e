package router

import (
	"context"
	"fmt"
	"sync"
)

// barrier counts work still under way for what a session sent, which the
// server must finish before it acknowledges anything the session sent
// later: an offline message is stored off the session's reader (so the
// sender pipelines), yet an iq answer or a XEP-0198 <a/> that follows it
// must not be written before it is durable.
type barrier struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n falls back to 0
}

// Hold counts one piece of work done for what the session sent; call the
// release it returns once the work is done (durable, or failed and
// reported to the client). Extra calls of release do nothing.
func (s *Session) Hold() (release func()) {
	b := &s.pending
	b.mu.Lock()
	if b.n == 0 {
		b.zero = make(chan struct{})
	}
	b.n++
	b.mu.Unlock()
	return sync.OnceFunc(func() {
		b.mu.Lock()
		b.n--
		if b.n == 0 {
			close(b.zero)
		}
		b.mu.Unlock()
	})
}

// Settle waits until the work of every Hold is released, or ctx ends.
// It is called on the session's reader before the server acknowledges
// what the session sent, so no Hold is taken meanwhile.
func (s *Session) Settle(ctx context.Context) error {
	b := &s.pending
	b.mu.Lock()
	if b.n == 0 {
		b.mu.Unlock()
		return nil
	}
	zero, n := b.zero, b.n
	b.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("router: %d stanzas of %s still being stored: %w", n, s.fullStr, ctx.Err())
	}
}
