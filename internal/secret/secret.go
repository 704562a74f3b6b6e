// Package secret gives xmppd and xmppctl the one secret key that seals the
// SMS carrying passwords and signs web sessions: both must use the same,
// so neither may make its own.
package secret

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"dialtone/internal/config"
	"dialtone/internal/datadir"
)

// File is the name of the key kept in the data dir.
const File = "secret.key"

// Key returns XMPPD_SECRET_KEY, or the key kept in the data dir, making it
// on first use (SPEC.md: "made once and kept in the data dir").
func Key(cfg config.Config) ([]byte, error) {
	key, err := cfg.SecretKeyBytes()
	if err != nil {
		return nil, fmt.Errorf("XMPPD_SECRET_KEY: %w", err)
	}
	if key != nil {
		return key, nil
	}
	path := filepath.Join(cfg.DataDir, File)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		// Once: when xmppd and xmppctl both make one, the first wins and
		// both use it.
		b, err = datadir.WriteOnce(path, []byte(hex.EncodeToString(key)+"\n"))
	}
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	key, err = hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s: not 64 hex digits; remove it to make a new key", path)
	}
	return key, nil
}
