package daemon

import (
	"context"
	"time"

	"dialtone/storage"
	"dialtone/xmppd/ext"
	"dialtone/xmppd/im"
)

// The store implements the XMPP modules' store interfaces. The check is
// made here, where the two are wired, because storage imports no XMPP
// package.
var (
	_ im.Store         = (*storage.DB)(nil)
	_ ext.PrivateStore = (*storage.DB)(nil)
	_ ext.BlockStore   = (*storage.DB)(nil)
)

// blockStore bounds each call of the blocking module to the store by
// XMPPD_STORE_TIMEOUT. The module loads a block list the first time a
// stanza needs it, on the reader of the session that sent the stanza, and
// other senders to the same account wait for that load: without a bound,
// a database that hangs stopped every client that wrote to an offline
// user, for good (TestStoreHangs/postgres_stopped). Drop it once the
// module bounds its own store calls.
type blockStore struct {
	db      *storage.DB
	timeout time.Duration
}

func (s blockStore) BlockList(ctx context.Context, owner string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.db.BlockList(ctx, owner)
}

func (s blockStore) Block(ctx context.Context, owner string, jids []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.db.Block(ctx, owner, jids)
}

func (s blockStore) Unblock(ctx context.Context, owner string, jids []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.db.Unblock(ctx, owner, jids)
}
