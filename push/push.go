// Package push is the domain of XEP-0357 push notifications: an account's
// registrations with app servers and their store.
package push

import "context"

// Registration is one enabled app server of an account.
type Registration struct {
	// Owner is the account (its number).
	Owner string
	// JID is the app server; Node the node the client got from it.
	JID, Node string
	// Options is the publish-options form the client sent with
	// <enable/> (a jabber:x:data <x/> element as received), nil when none.
	Options []byte
}

// Store keeps the registrations (storage implements it).
type Store interface {
	// AddPush adds or replaces the registration of (Owner, JID, Node).
	AddPush(ctx context.Context, r Registration) error
	// RemovePush removes owner's registration with jid and node, or with
	// every node of jid when node is empty.
	RemovePush(ctx context.Context, owner, jid, node string) error
	// PushRegistrations lists owner's registrations.
	PushRegistrations(ctx context.Context, owner string) ([]Registration, error)
}
