package daemon_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/config"
	"dialtone/internal/pgtest"
	"dialtone/internal/secret"
	"dialtone/storage"
)

// TestClusterShared runs two daemons on one PostgreSQL database, as two
// nodes of a cluster (SPEC.md "Several servers (clustering)"), with data
// dirs of their own: they agree on the secret key, a password request
// limit counts the requests made on both, each password SMS is sent once
// though both nodes send from the outbox, and failed logins on one node
// lock the number on the other.
func TestClusterShared(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.URL(t))
	rcv := newSMSReceiver(t)
	extra := map[string]string{"XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR": "3", "XMPPD_LOGIN_FAILURES": "2"}
	a := startDaemon(t, webhookEnv(t, url, rcv, extra))
	b := startDaemon(t, webhookEnv(t, url, rcv, extra))
	b.seq.Store(1000) // numbers apart from a's

	// One key, though each data dir made its own.
	db, err := storage.Open(t.Context(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys [][]byte
	for _, s := range []*daemonUnderTest{a, b} {
		cfg, err := config.LoadFrom(s.env)
		if err != nil {
			t.Fatal(err)
		}
		k, err := secret.SharedKey(t.Context(), cfg, db)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	fa, errA := os.ReadFile(filepath.Join(a.env["XMPPD_DATA_DIR"], secret.File))
	fb, errB := os.ReadFile(filepath.Join(b.env["XMPPD_DATA_DIR"], secret.File))
	if errA != nil || errB != nil || bytes.Equal(fa, fb) {
		t.Fatalf("data dir keys: %v %v, equal %v (each node makes its own)", errA, errB, bytes.Equal(fa, fb))
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the nodes use different secret keys")
	}

	// Three requests from 127.0.0.1 over two nodes fill the hourly cap.
	nums := []string{a.newNumber(), a.newNumber(), b.newNumber()}
	pass := requestPassword(t, a, rcv, nums[0], 1)
	requestPassword(t, b, rcv, nums[1], 1)
	requestPassword(t, a, rcv, nums[2], 1)
	resp, err := http.Post("http://"+b.d.Addr("http")+"/api/v1/password", "application/json",
		strings.NewReader(`{"phone":"`+b.newNumber()+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth request on the other node: %d, want 429", resp.StatusCode)
	}
	// The third SMS came after the first two were sent: a second sending
	// of either would have raced the first, long before.
	for _, n := range nums[:2] {
		if got := rcv.To(n); len(got) != 1 {
			t.Fatalf("%s got %d SMS, want 1", n, len(got))
		}
	}

	// Two failures on node A lock the number on node B too.
	for range 2 {
		if _, cond := authAt(t, a.c2s(), domain, nums[0], "wrong-"+pass, "x"); cond == "" {
			t.Fatal("a wrong password was accepted")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.d.Lockout.Locked(auth.Number(nums[0])) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the lock made on node A never reached node B")
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
	}
	if _, cond := authAt(t, b.c2s(), domain, nums[0], pass, "x"); cond == "" {
		t.Fatal("node B let a number locked on node A log in")
	}
}
