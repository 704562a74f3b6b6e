package secret

import (
	"context"
	"fmt"

	"dialtone/internal/config"
)

// Store is the shared store of a cluster's secrets (storage.DB).
type Store interface {
	// SharedSecret returns the secret kept under name, keeping candidate
	// first when there is none.
	SharedSecret(ctx context.Context, name string, candidate []byte) ([]byte, error)
	// Driver names the engine: only "postgres" is shared by several nodes.
	Driver() string
}

// Names of the secrets in the shared store.
const (
	SharedKeyName      = "secret key"
	SharedDialbackName = "s2s dialback secret"
)

// SharedKey is Key for a server whose store may be shared by the nodes of
// a cluster (SPEC.md "Several servers (clustering)": every node needs the
// same key "or reads them from the shared store"). XMPPD_SECRET_KEY wins;
// otherwise, on PostgreSQL, the key in the database, which the first node
// to start puts there (its data dir's key, so a single server that becomes
// the first node of a cluster keeps its key); on SQLite, Key.
func SharedKey(ctx context.Context, cfg config.Config, store Store) ([]byte, error) {
	local, err := Key(cfg)
	if err != nil || cfg.SecretKey != "" {
		return local, err
	}
	return Shared(ctx, store, SharedKeyName, local)
}

// Shared returns the secret of the cluster named name: local, unless the
// store is shared and another node put its own there first.
func Shared(ctx context.Context, store Store, name string, local []byte) ([]byte, error) {
	if store == nil || store.Driver() != "postgres" {
		return local, nil
	}
	key, err := store.SharedSecret(ctx, name, local)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return key, nil
}
