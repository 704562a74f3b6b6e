// Package offline keeps messages for accounts with no available resource
// (XEP-0160) and hands them over, oldest first, when the account comes online.
package offline

import (
	"context"
	"errors"
	"time"
)

// Message is one stored message.
type Message struct {
	ID     int64     // assigned by the store, increasing in storing order
	Owner  string    // receiver's canonical number ("+8210…")
	From   string    // sender's full JID as stamped by the server
	Stamp  time.Time // when it was stored
	Stanza []byte    // the message stanza as it would have been delivered
}

// Limits bound what one account holds of stored messages; a store
// refuses a message beyond either with ErrFull.
type Limits struct {
	Messages int // XMPPD_OFFLINE_LIMIT; <= 0: no limit
	Bytes    int // XMPPD_OFFLINE_BYTES, of stored stanzas; <= 0: no limit
}

// ErrFull is returned by Push when the owner's store is at its limit.
var ErrFull = errors.New("offline store full")

// Store is the durable offline queue. Implemented by package storage.
type Store interface {
	// PushOffline stores m (its ID is assigned) unless owner already has
	// limit messages, in which case it returns ErrFull; limit <= 0 means no limit.
	PushOffline(ctx context.Context, m Message, limit int) (id int64, err error)
	// OfflineMessages returns up to max messages of owner, oldest first.
	OfflineMessages(ctx context.Context, owner string, max int) ([]Message, error)
	// DeleteOffline removes the given messages of owner.
	DeleteOffline(ctx context.Context, owner string, ids []int64) error
	// CountOffline returns how many messages owner has stored.
	CountOffline(ctx context.Context, owner string) (int, error)
}
