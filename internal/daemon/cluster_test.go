package daemon_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	// Node names as every cluster has them: a node releases the outbox
	// claims made under its own name when it starts.
	envA, envB := webhookEnv(t, url, rcv, extra), webhookEnv(t, url, rcv, extra)
	envA["XMPPD_NODE_NAME"], envB["XMPPD_NODE_NAME"] = "shared-a", "shared-b"
	a := startDaemon(t, envA)
	b := startDaemon(t, envB)
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

// TestClusterJobsOnce runs three daemons on one PostgreSQL database with
// unclaimed accounts released 2 s after their password SMS: each
// once-per-cluster job runs on exactly one node (xmppd_job_running summed
// over the nodes is 1), only that node sweeps, each account is released
// once (xmppd_unclaimed_released_total summed over the nodes), and when
// the sweeper's node stops another takes the job over and releases what
// is made next.
func TestClusterJobsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("three daemons and a job handover: not with -short")
	}
	url := pgtest.NewDatabase(t, pgtest.URL(t))
	rcv := newSMSReceiver(t)
	extra := map[string]string{"XMPPD_UNCLAIMED_ACCOUNT_TTL": "2s", "XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR": "100"}
	nodes := []*daemonUnderTest{
		startDaemon(t, webhookEnv(t, url, rcv, extra)),
		startDaemon(t, webhookEnv(t, url, rcv, extra)),
		startDaemon(t, webhookEnv(t, url, rcv, extra)),
	}
	for i, n := range nodes {
		n.seq.Store(int64(1000 * i))
	}
	const sweeper = "unclaimed account sweeper"
	// running returns the node that runs job, failing when more than one
	// does; nil while none does.
	running := func(job string, among []*daemonUnderTest) *daemonUnderTest {
		t.Helper()
		var on []*daemonUnderTest
		for _, n := range among {
			if metricOf(t, n, `xmppd_job_running{job="`+job+`"}`) == 1 {
				on = append(on, n)
			}
		}
		if len(on) > 1 {
			t.Fatalf("%d nodes run %s", len(on), job)
		}
		if len(on) == 0 {
			return nil
		}
		return on[0]
	}
	holder := func(job string, among []*daemonUnderTest) *daemonUnderTest {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second) // jobRetry is 5 s
		for {
			if n := running(job, among); n != nil {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("no node runs %s", job)
			}
			time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
		}
	}
	for _, job := range []string{sweeper, "notice windows", "upload expiry", "shared limits prune"} {
		holder(job, nodes)
	}
	sum := func(name string) float64 {
		total := 0.0
		for _, n := range nodes {
			total += metricOf(t, n, name)
		}
		return total
	}
	// released waits until every one of nums is released (in the store, as
	// the node at asks it), for at most 10 s.
	released := func(at *daemonUnderTest, nums ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, num := range nums {
			for {
				_, err := at.d.DB.Account(t.Context(), auth.Number(num))
				if errors.Is(err, auth.ErrNotFound) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s was never released (%v)", num, err)
				}
				time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
			}
		}
	}

	// Accounts made on every node, released by the one that sweeps.
	var nums []string
	for _, n := range nodes {
		num := n.newNumber()
		requestPassword(t, n, rcv, num, 1)
		nums = append(nums, num)
	}
	released(nodes[0], nums...)
	first := holder(sweeper, nodes)
	if got := sum("xmppd_unclaimed_released_total"); got != 3 {
		t.Fatalf("released %v accounts over the nodes, want 3", got)
	}
	for _, n := range nodes {
		sweeps := metricOf(t, n, "xmppd_unclaimed_sweeps_total")
		if (n == first) != (sweeps > 0) {
			t.Errorf("a node that %s the sweeper swept %v times", map[bool]string{true: "runs", false: "does not run"}[n == first], sweeps)
		}
		if logged := strings.Contains(n.log.String(), "unclaimed accounts released"); logged != (n == first) {
			t.Errorf("released accounts logged by a node that does not run the sweeper, or not by the one that does")
		}
	}

	// Its node stops: another takes the job over.
	before := metricOf(t, first, "xmppd_unclaimed_released_total")
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	var rest []*daemonUnderTest
	for _, n := range nodes {
		if n != first {
			rest = append(rest, n)
		}
	}
	second := holder(sweeper, rest)
	num := rest[0].newNumber()
	requestPassword(t, rest[0], rcv, num, 1)
	released(rest[0], num)
	got := 0.0
	for _, n := range rest {
		got += metricOf(t, n, "xmppd_unclaimed_released_total")
	}
	if got != 1 || metricOf(t, second, "xmppd_unclaimed_released_total") != 1 {
		t.Fatalf("after the move: %v released by the other nodes (want 1, by the new holder); %v before by the first", got, before)
	}
}

// metricOf reads the value of the sample name (with its labels, as
// /metrics writes them) from n's /metrics; 0 when absent.
func metricOf(t *testing.T, n *daemonUnderTest, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.d.Addr("http") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
