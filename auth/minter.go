package auth

import (
	"context"
	"fmt"
)

// Minted is a new random password with its SCRAM credentials.
type Minted struct {
	Password    string
	Credentials Credentials
}

// Minter makes new passwords and their credentials ahead of need, on one
// goroutine of its own (Run), and hands them out (Mint). The first message
// to a number that has never used the service makes its account with a
// password, and deriving the credentials is PBKDF2 twice (SHA-1 and
// SHA-256): done on the sender's goroutine, a client writing to thousands
// of new numbers would spend that much of the server's CPU on its own
// behalf, as fast as it can write. Through a Minter the derivations run on
// one goroutine, at most one core, only to refill what was taken; a burst
// waits for it instead of multiplying it.
type Minter struct {
	// Length of the passwords; 0: MinPasswordLength.
	Length int
	ready  chan Minted
}

// DefaultMinterReady is how many minted passwords a Minter keeps ready: a
// burst of that many first messages costs no wait.
const DefaultMinterReady = 16

// NewMinter returns a Minter of passwords of length that keeps ready of
// them at hand (0: DefaultMinterReady). Nothing is minted until Run.
func NewMinter(length, ready int) *Minter {
	if ready <= 0 {
		ready = DefaultMinterReady
	}
	return &Minter{Length: length, ready: make(chan Minted, ready)}
}

// Run mints until ctx ends, keeping the ready queue full. It returns
// ctx's error, or the error of the system's random source.
func (m *Minter) Run(ctx context.Context) error {
	for {
		length := m.Length
		if length == 0 {
			length = MinPasswordLength
		}
		password, err := GeneratePassword(length)
		if err != nil {
			return err
		}
		c, err := NewCredentials(password)
		if err != nil {
			return err
		}
		select {
		case m.ready <- Minted{Password: password, Credentials: c}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Mint takes a minted password, waiting for one until ctx ends. It never
// derives on the caller's goroutine.
func (m *Minter) Mint(ctx context.Context) (Minted, error) {
	select {
	case p := <-m.ready:
		return p, nil
	case <-ctx.Done():
		return Minted{}, fmt.Errorf("auth: no new password ready: %w", ctx.Err())
	}
}
