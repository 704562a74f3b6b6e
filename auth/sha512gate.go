package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// SHA512Gate decides SASL.SHA512. Mechanisms are offered before the user
// is known, and a client that sees SCRAM-SHA-512 picks it (Conversations
// then pins it), so offering it while some account has no SHA-512 keys
// (its password set before they were kept) would lock that account out.
// The gate opens once no account lacks them, and stays open: every
// password set since has SHA-512 keys, so none can lack them again.
type SHA512Gate struct {
	// Missing counts the accounts without SHA-512 keys.
	Missing func(ctx context.Context) (int, error)
	// Every is how often a closed gate asks again; 0: a minute.
	Every time.Duration
	// Timeout bounds one question; 0: two seconds.
	Timeout time.Duration

	open    atomic.Bool
	mu      sync.Mutex // one question at a time
	checked time.Time
}

// Open reports whether SCRAM-SHA-512 may be offered. A closed gate asks
// the store at most once per Every; callers meanwhile, and on a store
// error, get the last answer.
func (g *SHA512Gate) Open() bool {
	if g.open.Load() {
		return true
	}
	if !g.mu.TryLock() {
		return false
	}
	defer g.mu.Unlock()
	every, timeout := g.Every, g.Timeout
	if every <= 0 {
		every = time.Minute
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if !g.checked.IsZero() && time.Since(g.checked) < every {
		return false
	}
	g.checked = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if n, err := g.Missing(ctx); err == nil && n == 0 {
		g.open.Store(true)
	}
	return g.open.Load()
}
