package router

import (
	"context"
	"errors"
	"testing"
	"time"
)

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("not cancelled: %s", what)
	}
}

// A session's context behaves as context.WithCancel's: its children (a
// store call's timeout) end with it, a cancelled parent ends it; and a
// child that ended first leaves nothing behind in it.
func TestSessionContext(t *testing.T) {
	c := newSessionCtx(context.Background())
	child, cancelChild := context.WithTimeout(c, time.Hour)
	if len(c.after) != 1 {
		t.Fatalf("%d children registered, want 1", len(c.after))
	}
	cancelChild()
	if c.after != nil {
		t.Fatalf("an ended child left %v", c.after)
	}
	if child.Err() == nil || c.Err() != nil {
		t.Fatal("the child's end reached its parent, or not the child")
	}

	child, cancelChild = context.WithTimeout(c, time.Hour)
	defer cancelChild()
	done := c.Done()
	c.cancel(context.Canceled)
	waitClosed(t, done, "the session's Done")
	waitClosed(t, child.Done(), "a child of the session")
	if !errors.Is(child.Err(), context.Canceled) || !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("errors: child %v, session %v", child.Err(), c.Err())
	}
	// Made after the end: done at once.
	waitClosed(t, c.Done(), "Done after cancel")
	late, cancelLate := context.WithCancel(c)
	defer cancelLate()
	waitClosed(t, late.Done(), "a child made after the end")

	parent, cancelParent := context.WithCancel(context.Background())
	c = newSessionCtx(parent)
	cancelParent()
	waitClosed(t, c.Done(), "the session of a cancelled parent")

	// A session that ends first takes itself off its parent.
	parent, cancelParent = context.WithCancel(context.Background())
	defer cancelParent()
	c = newSessionCtx(parent)
	c.cancel(context.Canceled)
	if c.unhook != nil {
		t.Fatal("still hooked to its parent")
	}
}
