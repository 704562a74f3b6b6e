package im

import "context"

// Subscription values of a roster item (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// Item is one stored roster item of an account (RFC 6121 §2.1.2), with the
// server-side subscription state of RFC 6121 Appendix A: Subscription plus
// the pending flags ("None + Pending Out" is Subscription "none",
// PendingOut true).
type Item struct {
	Contact      string // bare JID of the contact, canonical form
	Name         string
	Subscription string // SubNone, SubTo, SubFrom, SubBoth
	PendingOut   bool   // we asked the contact (ask="subscribe")
	PendingIn    bool   // the contact asked us and we have not answered
	Approved     bool   // pre-approved (RFC 6121 §3.4)
	Groups       []string
	// InRoster is false for items that exist only to remember a pending
	// inbound subscription request from a contact the user never added: such
	// items are not shown in roster results or pushes (RFC 6121 §3.1.3).
	InRoster bool
}

// Store keeps rosters, keyed by the owner's canonical number ("+8210…").
// Every change increments the owner's roster version (XEP-0237).
// Implemented by package storage.
type Store interface {
	// Roster returns all items of owner (including those with InRoster
	// false) and the current roster version (0 when it never changed).
	Roster(ctx context.Context, owner string) (items []Item, version int64, err error)
	// RosterItem returns one item, or auth.ErrNotFound.
	RosterItem(ctx context.Context, owner, contact string) (Item, error)
	// PutRosterItem inserts or replaces the item and returns the new version.
	PutRosterItem(ctx context.Context, owner string, item Item) (version int64, err error)
	// DeleteRosterItem removes the item (no error when absent) and returns
	// the new version.
	DeleteRosterItem(ctx context.Context, owner, contact string) (version int64, err error)
	// RosterCount returns the number of items stored for owner, those kept
	// only for a pending inbound request (InRoster false) included.
	RosterCount(ctx context.Context, owner string) (int, error)
}
