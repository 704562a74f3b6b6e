// Package archive is the message archive's domain (XEP-0313 with XEP-0359
// stanza ids): the archived message, the query a store answers, the
// preferences, the store interface, and the archive ids.
//
// An archive id is a positive int64: milliseconds since the Unix epoch in
// the high bits and a counter in the low CounterBits, handed out by a
// Clock so that ids increase strictly within a process and survive a
// restart (the clock starts past the highest stored id). It is at once the
// XEP-0359 stanza-id, the paging cursor and the time of archiving, so a
// store needs one index per query shape and no separate time column.
package archive

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// CounterBits is how many low bits of an id count ids within one
// millisecond (2,097,152 per millisecond).
const CounterBits = 21

// Message is one archived message of one account.
type Message struct {
	// Owner is the account (its number, the localpart of its JID).
	Owner string
	// ID is the archive id (the stanza-id given to the owner's copy).
	ID int64
	// With is the bare JID of the other party, WithResource its resource
	// ("" when none).
	With, WithResource string
	// Stanza is the message as it was routed, serialised without a
	// namespace (router.Stanza.Bytes).
	Stanza []byte
}

// Time is when a message with this id was archived.
func Time(id int64) time.Time { return time.UnixMilli(id >> CounterBits).UTC() }

// FirstID is the least id given at or after t.
func FirstID(t time.Time) int64 { return max(t.UnixMilli(), 0) << CounterBits }

// LastID is the greatest id given at or before t.
func LastID(t time.Time) int64 {
	return max(t.UnixMilli()+1, 0)<<CounterBits - 1
}

// idWidth is the length of every id's string form: 2^63 in base 32.
const idWidth = 13

// FormatID is the string form of an id (the stanza-id and the RSM
// cursor): base 32, zero-padded to a fixed width, so that ids sort as
// strings as they sort as numbers.
func FormatID(id int64) string {
	s := strconv.FormatInt(id, 32)
	if len(s) < idWidth {
		s = strings.Repeat("0", idWidth-len(s)) + s
	}
	return s
}

// AppendID appends FormatID(id) to b, with no string made on the way
// (the routing path stamps every archived message with one).
func AppendID(b []byte, id int64) []byte {
	var digits [16]byte
	d := strconv.AppendInt(digits[:0], id, 32)
	for range idWidth - len(d) {
		b = append(b, '0')
	}
	return append(b, d...)
}

// ParseID reads an id's string form.
func ParseID(s string) (int64, error) {
	if len(s) != idWidth {
		return 0, fmt.Errorf("archive: id %q: not an archive id", s)
	}
	id, err := strconv.ParseInt(s, 32, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("archive: id %q: not an archive id", s)
	}
	return id, nil
}

// Clock hands out ids: time-ordered, strictly increasing, unique within
// the process. The zero value is ready; Start makes it continue past ids
// already stored. It takes no lock: one compare-and-swap per id.
type Clock struct {
	last atomic.Int64
	now  func() time.Time // nil: time.Now
}

// Start makes every later id greater than last.
func (c *Clock) Start(last int64) {
	for {
		cur := c.last.Load()
		if cur >= last || c.last.CompareAndSwap(cur, last) {
			return
		}
	}
}

// Next returns a new id.
func (c *Clock) Next() int64 {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := FirstID(now())
	for {
		cur := c.last.Load()
		id := max(t, cur+1)
		if c.last.CompareAndSwap(cur, id) {
			return id
		}
	}
}

// Query selects archived messages of one owner. Bounds are exclusive;
// zero means none.
type Query struct {
	Owner string
	// With selects one party (a bare JID); WithResource, when set too,
	// one of its resources.
	With, WithResource string
	// After and Before: only ids > After and < Before.
	After, Before int64
	// IDs, when not empty, selects exactly these ids (still within the
	// other bounds).
	IDs []int64
	// Max is the page size (> 0).
	Max int
	// Last takes the page next to Before (or the newest page) instead of
	// the page next to After (or the oldest).
	Last bool
}

// Store keeps the archive (storage implements it on SQLite and
// PostgreSQL).
type Store interface {
	// AppendArchive stores the messages in one transaction (a batch of
	// the write-behind queue).
	AppendArchive(ctx context.Context, msgs []Message) error
	// QueryArchive returns up to q.Max messages, oldest first, and
	// whether the selection goes on past the page in the query's
	// direction (after the page, or before it when q.Last).
	QueryArchive(ctx context.Context, q Query) (page []Message, more bool, err error)
	// LastArchiveID is the greatest id stored, 0 when none.
	LastArchiveID(ctx context.Context) (int64, error)
	// DeleteArchiveBefore removes messages (of any owner) with an id
	// below id, a step of at most about limit at a time (the store keeps
	// messages in groups and removes whole groups), and returns how many
	// it removed: 0 once none is left.
	DeleteArchiveBefore(ctx context.Context, id int64, limit int) (int64, error)
	// ArchivePrefs returns owner's preferences (Default "always" and no
	// lists when never set).
	ArchivePrefs(ctx context.Context, owner string) (Prefs, error)
	// SetArchivePrefs replaces owner's preferences.
	SetArchivePrefs(ctx context.Context, owner string, p Prefs) error
}

// Defaults of Prefs.Default (XEP-0313 §7).
const (
	Always = "always"
	Never  = "never"
	Roster = "roster"
)

// Prefs are an account's archiving preferences: the default and the bare
// JIDs always or never archived.
type Prefs struct {
	Default       string
	Always, Never []string
}

// Archives reports whether a message with the bare JID with is archived
// under p; inRoster is asked only for the default "roster".
func (p Prefs) Archives(with string, inRoster func() bool) bool {
	for _, j := range p.Never {
		if j == with {
			return false
		}
	}
	for _, j := range p.Always {
		if j == with {
			return true
		}
	}
	switch p.Default {
	case Never:
		return false
	case Roster:
		return inRoster != nil && inRoster()
	}
	return true
}
