package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
)

var sha512Tests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"SHA512Keys", testSHA512Keys},
}

// with512 is creds(seed) with SHA-512 keys too.
func with512(seed byte) auth.Credentials {
	c := creds(seed)
	c.SHA512 = auth.ScramKeys{Salt: []byte{seed, 0xc3, 1}, Iterations: 10000 + int(seed),
		StoredKey: []byte{seed, 0xc3, 2}, ServerKey: []byte{seed, 0xc3, 3}}
	return c
}

func sameKeys(a, b auth.ScramKeys) bool {
	return bytes.Equal(a.Salt, b.Salt) && a.Iterations == b.Iterations &&
		bytes.Equal(a.StoredKey, b.StoredKey) && bytes.Equal(a.ServerKey, b.ServerKey)
}

// testSHA512Keys: SHA-512 keys round-trip, an account without them is
// counted, a pending password brings its own, and promoting a pending
// password without them leaves none of the old password's behind.
func testSHA512Keys(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	old, modern := auth.Number("+821050000001"), auth.Number("+821050000002")
	_, err := db.SetCredentials(ctx, old, creds(1))
	must(t, err)
	_, err = db.SetCredentials(ctx, modern, with512(2))
	must(t, err)
	a, err := db.Account(ctx, modern)
	must(t, err)
	if !sameKeys(a.Credentials.SHA512, with512(2).SHA512) || !sameKeys(a.Credentials.SHA256, creds(2).SHA256) {
		t.Fatalf("SHA-512 keys %+v", a.Credentials.SHA512)
	}
	if a, err := db.Account(ctx, old); err != nil || a.Credentials.SHA512.StoredKey != nil || a.Credentials.SHA512.Iterations != 0 {
		t.Fatalf("old account: %+v, %v", a.Credentials.SHA512, err)
	}
	if n, err := db.AccountsWithoutSHA512(ctx); err != nil || n != 1 {
		t.Fatalf("AccountsWithoutSHA512 = %d, %v", n, err)
	}
	// A pending password of the modern account, salted alike.
	p := with512(3)
	p.SHA1.Salt, p.SHA1.Iterations = a.Credentials.SHA1.Salt, a.Credentials.SHA1.Iterations
	p.SHA256.Salt, p.SHA256.Iterations = a.Credentials.SHA256.Salt, a.Credentials.SHA256.Iterations
	p.SHA512.Salt, p.SHA512.Iterations = a.Credentials.SHA512.Salt, a.Credentials.SHA512.Iterations
	must(t, db.IssuePendingPassword(ctx, modern, a.Generation, p, pending("sha512-1", modern, time.Now())))
	a, err = db.Account(ctx, modern)
	must(t, err)
	if !sameKeys(a.Pending.SHA512, p.SHA512) {
		t.Fatalf("pending SHA-512 %+v", a.Pending.SHA512)
	}
	if _, _, err := db.PromotePending(ctx, modern, a.Pending); err != nil {
		t.Fatal(err)
	}
	if a, _ = db.Account(ctx, modern); !sameKeys(a.Credentials.SHA512, p.SHA512) || a.Pending.SHA512.StoredKey != nil {
		t.Fatalf("promoted SHA-512 %+v, pending %+v", a.Credentials.SHA512, a.Pending.SHA512)
	}
	// A pending password without SHA-512 keys: once it is current the
	// old password's SHA-512 keys are gone.
	q := creds(4)
	q.SHA1.Salt, q.SHA1.Iterations = a.Credentials.SHA1.Salt, a.Credentials.SHA1.Iterations
	q.SHA256.Salt, q.SHA256.Iterations = a.Credentials.SHA256.Salt, a.Credentials.SHA256.Iterations
	must(t, db.IssuePendingPassword(ctx, modern, a.Generation, q, pending("sha512-2", modern, time.Now())))
	a, _ = db.Account(ctx, modern)
	if _, _, err := db.PromotePending(ctx, modern, a.Pending); err != nil {
		t.Fatal(err)
	}
	if a, _ = db.Account(ctx, modern); a.Credentials.SHA512.StoredKey != nil || a.Credentials.HasSHA512() {
		t.Fatalf("old SHA-512 keys survived a password without them: %+v", a.Credentials.SHA512)
	}
}
