// Package roster is the domain of rosters (RFC 6121 §2, §3): the roster
// item with its server-side subscription state, the store interface, and
// the state machine of RFC 6121 Appendix A as pure functions. It knows no
// stanza: the modules xmppd/mod/roster and xmppd/mod/presence drive it,
// package storage keeps it.
package roster

import (
	"context"
	"slices"
)

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

// The transitions of RFC 6121 Appendix A on the server-side state of one
// roster item (Subscription, PendingOut, PendingIn). Each returns the new
// item; "no state change" returns it unchanged. They do not touch Approved
// or InRoster, which the callers handle (§3.4, §3.1.3).

// OutSubscribe is A.2.1: the user sends subscribe to the contact.
func OutSubscribe(it Item) Item {
	if (it.Subscription == SubNone || it.Subscription == SubFrom) && !it.PendingOut {
		it.PendingOut = true
	}
	return it
}

// OutUnsubscribe is A.2.2: the user sends unsubscribe to the contact.
func OutUnsubscribe(it Item) Item {
	it.PendingOut = false
	it.Subscription = dropTo(it.Subscription)
	return it
}

// OutSubscribed is A.2.3: the user approves the contact's request.
func OutSubscribed(it Item) Item {
	if it.PendingIn {
		it.PendingIn = false
		it.Subscription = AddFrom(it.Subscription)
	}
	return it
}

// OutUnsubscribed is A.2.4: the user denies or cancels the contact's
// subscription.
func OutUnsubscribed(it Item) Item {
	it.PendingIn = false
	it.Subscription = dropFrom(it.Subscription)
	return it
}

// InSubscribe is A.3.1: the contact asks for the user's presence. A
// contact that already has 'from' is auto-answered by the caller.
func InSubscribe(it Item) Item {
	if (it.Subscription == SubNone || it.Subscription == SubTo) && !it.PendingIn {
		it.PendingIn = true
	}
	return it
}

// InUnsubscribe is A.3.2: the contact no longer wants the user's presence.
func InUnsubscribe(it Item) Item {
	it.PendingIn = false
	it.Subscription = dropFrom(it.Subscription)
	return it
}

// InSubscribed is A.3.3: the contact approved the user's request.
func InSubscribed(it Item) Item {
	if it.PendingOut {
		it.PendingOut = false
		it.Subscription = addTo(it.Subscription)
	}
	return it
}

// InUnsubscribed is A.3.4: the contact denied or cancelled the user's
// subscription.
func InUnsubscribed(it Item) Item {
	it.PendingOut = false
	it.Subscription = dropTo(it.Subscription)
	return it
}

// AddFrom is the subscription with 'from' added (a pre-approved request
// is approved at once, RFC 6121 §3.4).
func AddFrom(s string) string {
	switch s {
	case SubNone:
		return SubFrom
	case SubTo:
		return SubBoth
	}
	return s
}

func addTo(s string) string {
	switch s {
	case SubNone:
		return SubTo
	case SubFrom:
		return SubBoth
	}
	return s
}

func dropFrom(s string) string {
	switch s {
	case SubFrom:
		return SubNone
	case SubBoth:
		return SubTo
	}
	return s
}

func dropTo(s string) string {
	switch s {
	case SubTo:
		return SubNone
	case SubBoth:
		return SubFrom
	}
	return s
}

// HasFrom reports whether the contact receives the user's presence.
func HasFrom(it Item) bool { return it.Subscription == SubFrom || it.Subscription == SubBoth }

// HasTo reports whether the user receives the contact's presence.
func HasTo(it Item) bool { return it.Subscription == SubTo || it.Subscription == SubBoth }

// Empty reports whether an item holds no subscription state at all.
func Empty(it Item) bool {
	return it.Subscription == SubNone && !it.PendingIn && !it.PendingOut && !it.Approved
}

// SameState reports whether two items have the same stored state (groups
// compared in order).
func SameState(a, b Item) bool {
	return a.Contact == b.Contact && a.Name == b.Name && a.Subscription == b.Subscription &&
		a.PendingOut == b.PendingOut && a.PendingIn == b.PendingIn && a.Approved == b.Approved &&
		a.InRoster == b.InRoster && slices.Equal(a.Groups, b.Groups)
}

// SameView reports whether a client would see the same roster item
// (RFC 6121 §2.1.2: pending-in is not shown; items not in the roster are
// not shown at all).
func SameView(a, b Item) bool {
	if !a.InRoster && !b.InRoster {
		return true
	}
	return a.InRoster == b.InRoster && a.Name == b.Name && a.Subscription == b.Subscription &&
		a.PendingOut == b.PendingOut && a.Approved == b.Approved && slices.Equal(a.Groups, b.Groups)
}
