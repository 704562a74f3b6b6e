package ext

import "context"

// PrivateStore keeps per-account XML blobs under a key: private XML storage
// (XEP-0049, key "{namespace}local") and the vCard (XEP-0054, key
// "vcard-temp"). Implemented by package storage.
type PrivateStore interface {
	// Private returns the stored XML for key, or auth.ErrNotFound.
	Private(ctx context.Context, owner, key string) ([]byte, error)
	// PutPrivate stores (replaces) the XML for key; an empty value deletes it.
	PutPrivate(ctx context.Context, owner, key string, data []byte) error
}

// BlockStore keeps each account's blocklist (XEP-0191) as JID strings.
// Implemented by package storage.
type BlockStore interface {
	BlockList(ctx context.Context, owner string) ([]string, error)
	// Block adds the JIDs (existing ones are kept once).
	Block(ctx context.Context, owner string, jids []string) error
	// Unblock removes the JIDs; an empty list removes all.
	Unblock(ctx context.Context, owner string, jids []string) error
}
