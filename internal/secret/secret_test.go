package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"dialtone/internal/config"
)

func TestKey(t *testing.T) {
	t.Run("made_once_and_kept", func(t *testing.T) {
		cfg := config.Config{DataDir: t.TempDir()}
		first, err := Key(cfg)
		if err != nil || len(first) != 32 {
			t.Fatalf("Key = %x, %v; want 32 bytes", first, err)
		}
		again, err := Key(cfg)
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("second Key = %x, %v; want the kept %x", again, err, first)
		}
		st, err := os.Stat(filepath.Join(cfg.DataDir, File))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v, %v; want mode 0600", st, err)
		}
	})
	t.Run("configured_wins", func(t *testing.T) {
		cfg := config.Config{DataDir: t.TempDir(), SecretKey: strings.Repeat("ab", 32)}
		key, err := Key(cfg)
		if err != nil || !bytes.Equal(key, bytes.Repeat([]byte{0xab}, 32)) {
			t.Fatalf("Key = %x, %v; want XMPPD_SECRET_KEY", key, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, File)); !os.IsNotExist(err) {
			t.Errorf("a configured key left a key file: %v", err)
		}
	})
	for name, content := range map[string]string{
		"short_file":   "abcd\n",
		"not_hex_file": strings.Repeat("zz", 32) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Config{DataDir: t.TempDir()}
			if err := os.WriteFile(filepath.Join(cfg.DataDir, File), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if key, err := Key(cfg); err == nil || !strings.Contains(err.Error(), "remove it") {
				t.Fatalf("Key = %x, %v; want an error that says to remove the file", key, err)
			}
		})
	}
	t.Run("bad_configured_key", func(t *testing.T) {
		cfg := config.Config{DataDir: t.TempDir(), SecretKey: "xyz"}
		if _, err := Key(cfg); err == nil || !strings.HasPrefix(err.Error(), "XMPPD_SECRET_KEY: ") {
			t.Fatalf("err = %v, want one naming XMPPD_SECRET_KEY", err)
		}
	})
}
