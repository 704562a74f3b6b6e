// Package offline is the domain of offline messages (XEP-0160): the message
// kept for an account with no available resource, the durable queue that
// keeps it, and the rules of what is kept and how it is handed over. The
// module that stores and delivers them on the server is xmppd/mod/offline;
// package storage implements the Store.
package offline

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
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

// Stored describes a message about to be stored, for the notice path
// (package sms decides whether and what to text).
type Stored struct {
	Owner auth.Number
	From  jid.JID // the sender's full JID
	Body  string
}

// Kept is what a KeepFunc reports.
type Kept struct {
	ID int64
	// Warning, when not nil, is a stanza.Error sent back to the sender
	// although the message was stored (e.g. policy-violation: no SMS was
	// sent), or, with ID 0, instead of storing it (policy-violation: the
	// sender wrote to too many new numbers today).
	Warning error
}

// KeepFunc stores m (ErrFull when its owner has limit messages; limit <= 0:
// no limit) and, in the same transaction, what its arrival causes: the
// notice SMS, the account that a message to a latent number makes
// unclaimed. A crash leaves both or neither.
type KeepFunc func(ctx context.Context, m Message, s Stored, limit int) (Kept, error)

// Keeps reports whether a message is stored for an offline receiver: one
// of type headline, groupchat or error is not stored
// (SPEC.md "Offline messages"), and neither is one without a body (chat
// states and receipts alone).
func Keeps(messageType string, hasBody bool) bool {
	switch messageType {
	case "", "normal", "chat":
		return hasBody
	}
	return false
}

// StampFormat is how the time a message was stored is written in its
// XEP-0203 delay.
const StampFormat = "2006-01-02T15:04:05.000Z"

// Batch is how many stored messages are loaded at a time, and ChunkBytes
// how many bytes of them are handed to a session before its client must
// answer: far below the bound of its write queue (1 MiB), whatever else it
// receives meanwhile.
const (
	Batch      = 100
	ChunkBytes = 256 << 10
)

// Chunk is how many of msgs make the next chunk: as many as fit in max
// bytes, and one at least.
func Chunk(msgs []Message, max int) int {
	n, size := 0, 0
	for _, m := range msgs {
		if n > 0 && size+len(m.Stanza) > max {
			break
		}
		n++
		size += len(m.Stanza)
	}
	return n
}
