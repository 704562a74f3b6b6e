package router

import (
	"context"
	"sync"
	"time"
)

// sessionCtx is a session's context, cancelled when the session closes.
// It is context.WithCancel's without what that keeps for a session's life:
// a cancelCtx keeps the map of its children once it had one, and every
// session has a child (each store call made for it, StoreContext), so the
// map was a few hundred bytes of every idle session. Children register
// through AfterFunc here (context's afterFuncer), in a slice that is
// dropped when they are gone.
type sessionCtx struct {
	parent context.Context
	mu     sync.Mutex
	done   chan struct{} // made on first use
	err    error
	after  []*afterFunc
	// unhook takes the context off its parent once it is cancelled.
	unhook func() bool
}

type afterFunc struct{ f func() }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newSessionCtx(parent context.Context) *sessionCtx {
	c := &sessionCtx{parent: parent}
	if parent.Done() != nil {
		c.mu.Lock() // f may run at once
		c.unhook = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
		c.mu.Unlock()
	}
	return c
}

func (c *sessionCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *sessionCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *sessionCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *sessionCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc runs f on a goroutine of its own once the context is
// cancelled (at once if it is); stop undoes it, reporting whether it did.
func (c *sessionCtx) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.after = append(c.after, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, b := range c.after {
			if b == a {
				last := len(c.after) - 1
				c.after[i], c.after[last] = c.after[last], nil
				if c.after = c.after[:last]; last == 0 {
					c.after = nil
				}
				return true
			}
		}
		return false
	}
}

// cancel ends the context with err (context.Canceled for the session's
// close); only the first cancel counts.
func (c *sessionCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	after, unhook := c.after, c.unhook
	c.after, c.unhook = nil, nil
	c.mu.Unlock()
	if unhook != nil {
		unhook()
	}
	for _, a := range after {
		go a.f()
	}
}
