package main

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// scramClient is the client side of SCRAM (RFC 5802) without channel
// binding, as a real client runs it: the SaltedPassword of a (password,
// salt, iteration count) is derived once and cached, so that a login
// costs the client a few HMACs and the load tool measures the server, not
// PBKDF2 on its own side. The server's signature is checked.
type scramClient struct {
	mech       string
	h          func() hash.Hash
	user, pass string
	nonce      string
	bare       string // client-first-message-bare
	serverSig  []byte
	step       int
}

// maxScramIterations bounds what a server may ask of the client.
const maxScramIterations = 1 << 20

// saltedCache maps a scramKey to its SaltedPassword; derivations counts
// the PBKDF2 runs.
var (
	saltedCache sync.Map
	derivations atomic.Int64
)

type scramKey struct {
	mech, pass, salt string
	iter             int
}

func newScram(mech, user, pass string) (*scramClient, error) {
	c := &scramClient{mech: mech, user: user, pass: pass}
	switch mech {
	case "SCRAM-SHA-1":
		c.h = sha1.New
	case "SCRAM-SHA-256":
		c.h = sha256.New
	default:
		return nil, fmt.Errorf("scram: unknown mechanism %q", mech)
	}
	return c, nil
}

// Step answers the server's challenge (nil first) as sasl.Negotiator does.
func (c *scramClient) Step(chal []byte) (more bool, resp []byte, err error) {
	defer func() { c.step++ }()
	switch c.step {
	case 0:
		var nb [18]byte
		rand.Read(nb[:])
		c.nonce = base64.RawStdEncoding.EncodeToString(nb[:])
		name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
		c.bare = "n=" + name + ",r=" + c.nonce
		return true, []byte("n,," + c.bare), nil
	case 1:
		return c.final(string(chal))
	case 2:
		return false, nil, c.verify(string(chal))
	}
	return false, nil, errors.New("scram: too many steps")
}

func (c *scramClient) final(first string) (bool, []byte, error) {
	var nonce, salt64, iters string
	for _, f := range strings.Split(first, ",") {
		switch {
		case strings.HasPrefix(f, "r="):
			nonce = f[2:]
		case strings.HasPrefix(f, "s="):
			salt64 = f[2:]
		case strings.HasPrefix(f, "i="):
			iters = f[2:]
		}
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	iter, ierr := strconv.Atoi(iters)
	switch {
	case !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce):
		return false, nil, errors.New("scram: the server's nonce does not extend ours")
	case err != nil || len(salt) == 0:
		return false, nil, fmt.Errorf("scram: bad salt %q", salt64)
	case ierr != nil || iter < 1 || iter > maxScramIterations:
		return false, nil, fmt.Errorf("scram: bad iteration count %q", iters)
	}
	salted, err := c.salted(salt, iter)
	if err != nil {
		return false, nil, err
	}
	noProof := "c=biws,r=" + nonce
	authMsg := []byte(c.bare + "," + first + "," + noProof)
	clientKey := c.hmac(salted, "Client Key")
	sh := c.h()
	sh.Write(clientKey)
	proof := c.hmac(sh.Sum(nil), string(authMsg))
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	c.serverSig = c.hmac(c.hmac(salted, "Server Key"), string(authMsg))
	return true, []byte(noProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// salted is Hi(password, salt, i), from the cache when it was derived
// before.
func (c *scramClient) salted(salt []byte, iter int) ([]byte, error) {
	k := scramKey{mech: c.mech, pass: c.pass, salt: string(salt), iter: iter}
	if v, ok := saltedCache.Load(k); ok {
		return v.([]byte), nil
	}
	derivations.Add(1)
	v, err := pbkdf2.Key(c.h, c.pass, salt, iter, c.h().Size())
	if err != nil {
		return nil, fmt.Errorf("scram: %w", err)
	}
	saltedCache.Store(k, v)
	return v, nil
}

func (c *scramClient) hmac(key []byte, msg string) []byte {
	m := hmac.New(c.h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (c *scramClient) verify(final string) error {
	if e, ok := strings.CutPrefix(final, "e="); ok {
		return fmt.Errorf("scram: server error %q", e)
	}
	v, ok := strings.CutPrefix(final, "v=")
	sig, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil || !hmac.Equal(sig, c.serverSig) {
		return errors.New("scram: the server's signature is wrong")
	}
	return nil
}

// loadScramCache reads SaltedPasswords saved by saveScramCache (a file
// that does not exist yet is an empty cache): a real client keeps them
// across runs, and so may the load tool.
func loadScramCache(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 5 {
			return fmt.Errorf("%s:%d: want 5 fields", path, i+1)
		}
		pass, err1 := base64.StdEncoding.DecodeString(f[1])
		salt, err2 := base64.StdEncoding.DecodeString(f[2])
		iter, err3 := strconv.Atoi(f[3])
		salted, err4 := base64.StdEncoding.DecodeString(f[4])
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		saltedCache.Store(scramKey{mech: f[0], pass: string(pass), salt: string(salt), iter: iter}, salted)
	}
	return nil
}

// saveScramCache writes the cache for loadScramCache (mode 0600: it
// derives from passwords).
func saveScramCache(path string) error {
	var b strings.Builder
	enc := base64.StdEncoding.EncodeToString
	saltedCache.Range(func(k, v any) bool {
		key := k.(scramKey)
		fmt.Fprintf(&b, "%s %s %s %d %s\n", key.mech, enc([]byte(key.pass)), enc([]byte(key.salt)), key.iter, enc(v.([]byte)))
		return true
	})
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
