package auth

import (
	"context"
	"time"
)

// SharedLimits keeps the state of limits that must count across the nodes
// of a cluster (SPEC.md "Several servers (clustering)"): login lockouts,
// password and PIN request windows. Each limit is a small opaque state
// per kind and key, changed under a lock that every node's store honours.
// The store (storage.DB) implements it; on a single node the limits stay
// in memory and nothing uses it.
type SharedLimits interface {
	// UpdateLimit calls fn with the state stored for (kind, key), nil when
	// there is none or it expired, and stores what fn returns, all while
	// no other caller anywhere can change that key. A nil State removes
	// the key. An error from fn stores nothing and is returned.
	UpdateLimit(ctx context.Context, kind, key string, now time.Time, fn func(state []byte) (LimitState, error)) error
	// HeldLimits returns the keys of kind whose Held time is after now,
	// at most max of them, with that time.
	HeldLimits(ctx context.Context, kind string, now time.Time, max int) (map[string]time.Time, error)
	// ClearLimits removes the given keys of kind.
	ClearLimits(ctx context.Context, kind string, keys []string) error
	// PruneLimits removes every state that expired at now.
	PruneLimits(ctx context.Context, now time.Time) error
}

// LimitState is what SharedLimits keeps of one key.
type LimitState struct {
	// State is the limit's own encoding; nil removes the key.
	State []byte
	// Held is the end of a lock that every node must see without asking
	// (HeldLimits); zero: none.
	Held time.Time
	// Expires is when the state can be forgotten.
	Expires time.Time
}
