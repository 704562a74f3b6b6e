package ext

import "context"

// PrivateStore keeps per-account XML blobs under a key: private XML storage
// (XEP-0049, key "{namespace}local") and the vCard (XEP-0054, key
// "vcard-temp"). Implemented by package storage. owner is the account's
// canonical number ("+8210…"), the localpart of its JID; values are
// standalone XML elements that declare their own namespace.
type PrivateStore interface {
	// Private returns the stored XML for key, or auth.ErrNotFound.
	Private(ctx context.Context, owner, key string) ([]byte, error)
	// PutPrivate stores (replaces) the XML for key; an empty value deletes it.
	PutPrivate(ctx context.Context, owner, key string, data []byte) error
}

// BlockStore keeps each account's blocklist (XEP-0191) as JID strings in
// the form the server normalised them to. Implemented by package storage;
// owner is the account's canonical number, as for PrivateStore.
type BlockStore interface {
	// BlockList returns the blocked JIDs of owner, in any order; an empty
	// list (not an error) when there are none.
	BlockList(ctx context.Context, owner string) ([]string, error)
	// Block adds the JIDs (existing ones are kept once).
	Block(ctx context.Context, owner string, jids []string) error
	// Unblock removes the JIDs; an empty list removes all.
	Unblock(ctx context.Context, owner string, jids []string) error
}
