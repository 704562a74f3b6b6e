package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A Minter never derives on the caller's goroutine: without Run, Mint waits
// for its context instead of doing the PBKDF2 work itself.
func TestMinterWaitsInsteadOfDeriving(t *testing.T) {
	m := NewMinter(12, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.Mint(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Mint without Run: %v, want the context's deadline", err)
	}
}

func TestMinterMints(t *testing.T) {
	m := NewMinter(12, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	seen := map[string]bool{}
	for range 5 { // more than it keeps ready: Run refills
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		p, err := m.Mint(wctx)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Password) != 12 || seen[p.Password] {
			t.Fatalf("password %q (seen before: %v)", p.Password, seen[p.Password])
		}
		seen[p.Password] = true
		if !p.Credentials.Usable() || !p.Credentials.VerifyPassword(p.Password) {
			t.Fatalf("credentials do not verify the password %q", p.Password)
		}
		if p.Credentials.VerifyPassword(p.Password + "x") {
			t.Fatal("credentials verify a wrong password")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
}
