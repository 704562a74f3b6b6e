package sms

import (
	"context"
	"time"
)

// Pending is one SMS (or voice call) in the durable outbox, waiting for the
// gateway to accept it.
type Pending struct {
	ID      string // unique; sent to the gateway, the same on every retry
	To      string // canonical number, "+8210…"
	Purpose string // PurposePassword, PurposeNotice, PurposeTest
	Voice   bool   // a call that reads Body out, for numbers that take no SMS
	// Body is the text; when Sealed it is encrypted with the secret key
	// (it carries a password) and only the sending worker opens it.
	Body        []byte
	Sealed      bool
	Created     time.Time
	Attempts    int
	NextAttempt time.Time
	LastError   string
}

// Outbox is the durable queue of SMS. Implemented by package storage.
// Enqueueing also records the SMS in a log that QueuedTimes reads.
type Outbox interface {
	// EnqueueSMS adds p (its ID must be unique).
	EnqueueSMS(ctx context.Context, p Pending) error
	// DueSMS returns up to limit messages whose NextAttempt is not after
	// now, oldest NextAttempt first.
	DueSMS(ctx context.Context, now time.Time, limit int) ([]Pending, error)
	// DeleteSMS removes a message the gateway accepted (no error when gone).
	DeleteSMS(ctx context.Context, id string) error
	// RetrySMS records a failed attempt and when to try again.
	RetrySMS(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error
	// QueuedTimes returns when SMS of purpose were queued for to since the
	// given time, oldest first (for the per-number caps).
	QueuedTimes(ctx context.Context, to, purpose string, since time.Time) ([]time.Time, error)
}

// Claimer is an Outbox that several senders (the nodes of a cluster) can
// share: ClaimDueSMS takes the messages due at now as DueSMS would, and in
// the same step moves their NextAttempt to until, so that no other sender
// takes them before this one deleted or rescheduled them, or until passed
// (the sender died: then another one sends them, with the same id).
type Claimer interface {
	// ClaimDueSMS claims for the sender named by (its node).
	ClaimDueSMS(ctx context.Context, by string, now, until time.Time, limit int) ([]Pending, error)
	// ReleaseClaims makes the messages by still holds due at now: a
	// sender that starts again (a node restarted after a crash) sends
	// what it claimed and never sent at once, not when the lease ends.
	ReleaseClaims(ctx context.Context, by string, now time.Time) error
}

// ClaimLease is how long a claimed message is left to its sender: well
// past the gateway's SendTimeout for each message of a batch.
const ClaimLease = 2 * time.Minute
