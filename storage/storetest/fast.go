package storetest

import (
	"context"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
)

var fastTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"FastTokens", testFastTokens},
}

// testFastTokens: a client keeps its two newest tokens, newest first;
// expired ones are not returned; deleting before a time keeps the newer
// ones; other clients' tokens are apart; they go with the account.
func testFastTokens(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	n := auth.Number("+821060000001")
	_, err := db.SetCredentials(ctx, n, creds(1))
	must(t, err)
	base := time.Now().Truncate(time.Second)
	add := func(id, ua string, at time.Time) {
		must(t, db.AddFastToken(ctx, auth.FastToken{ID: id, Number: n, UserAgent: ua, Generation: 1, Created: at, Expires: at.Add(time.Hour)}))
	}
	add("a", "phone", base)
	add("b", "phone", base.Add(time.Second))
	add("c", "phone", base.Add(2*time.Second))
	add("x", "laptop", base)
	ids := func(ua string, now time.Time) string {
		list, err := db.FastTokens(ctx, n, ua, now)
		must(t, err)
		s := ""
		for _, tk := range list {
			s += tk.ID
		}
		return s
	}
	if got := ids("phone", base); got != "cb" {
		t.Fatalf("phone tokens %q; want cb (the two newest)", got)
	}
	if got := ids("laptop", base); got != "x" {
		t.Fatalf("laptop tokens %q", got)
	}
	if got := ids("phone", base.Add(time.Hour+time.Second)); got != "c" {
		t.Fatalf("after b expired: %q", got)
	}
	must(t, db.DeleteFastTokens(ctx, n, "phone", base.Add(2*time.Second)))
	if got := ids("phone", base); got != "c" {
		t.Fatalf("after deleting the older: %q", got)
	}
	must(t, db.DeleteFastTokens(ctx, n, "phone", time.Time{}))
	if got := ids("phone", base); got != "" {
		t.Fatalf("after deleting all: %q", got)
	}
	must(t, db.DeleteAccount(ctx, n))
	if got := ids("laptop", base); got != "" {
		t.Fatalf("tokens outlived the account: %q", got)
	}
}
