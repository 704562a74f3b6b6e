package offline

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

// groupEnv lets A fill B's store at full speed.
var groupEnv = map[string]string{
	"XMPPD_C2S_RATE":      "0",
	"XMPPD_OFFLINE_LIMIT": "5000",
}

// Issue 15: messages to an offline receiver are stored in groups off the
// sender's reader, and the answer to a ping that follows them is written
// only once all of them are committed. A pipelines its messages and the
// ping in one write; xmppd is killed (SIGKILL) the moment the answer
// arrives: every message is in the store, and B gets each one exactly
// once after the restart. Then cmd/xmppload's offline scenario runs
// against the same server and counts every message it stored by id.
func TestPipelinedThenKill(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	dir := t.TempDir()
	xmppd, xmppctl := build(t, dir)
	xmppload := testbin.Build(t, dir, "xmppload")["xmppload"]
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			s := newServer(t, xmppd, xmppctl, storeURL(t, store), newWebhook(t), groupEnv)
			s.start()
			pwA, pwB := s.account(numberA), s.account(numberB)
			s.activate(numberB, pwB)
			const n = 1000
			a := xmpptest.Login(t, s.addr(), numberA, pwA, "pipe")
			var buf []byte
			for i := 1; i <= n; i++ {
				buf = fmt.Appendf(buf, `<message to='%s@%s' type='chat' id='m%d'><body>%s</body></message>`, numberB, domain, i, body(i, ""))
			}
			buf = fmt.Appendf(buf, `<iq type='get' id='end' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, domain)
			written := make(chan error, 1)
			go func() {
				a.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				_, err := a.Conn.Write(buf)
				written <- err
			}()
			start := time.Now()
			for range n + 10 {
				e, err := a.TryNext(30 * time.Second)
				if err != nil {
					t.Fatalf("waiting for the ping's answer: %v", err)
				}
				if e.XMLName.Local == "iq" && e.Attr("id") == "end" {
					if e.Attr("type") != "result" {
						t.Fatalf("the ping was answered with %v", e)
					}
					break
				}
				t.Errorf("A got %v before the ping's answer", e)
			}
			s.kill()
			took := time.Since(start)
			if err := <-written; err != nil {
				t.Fatalf("writing: %v", err)
			}
			t.Logf("%d messages and the ping's answer in %v (%.0f/s), then SIGKILL", n, took, n/took.Seconds())
			stored := s.readStore(numberB).messages[numberB]
			if len(stored) != n || !slices.IsSorted(stored) || stored[0] != 1 || stored[n-1] != n {
				t.Fatalf("after the kill the store holds %d messages of B (%s), want 1…%d in order", len(stored), short(stored), n)
			}
			s.start()
			b := xmpptest.Login(t, s.addr(), numberB, pwB, "b")
			b.Send(`<presence/>`)
			got := numbers(collect(t, b, 1, n, time.Minute))
			if want := upTo2(n); !slices.Equal(got, want) {
				t.Fatalf("B got %d messages (%s), want each of 1…%d once, in order", len(got), short(got), n)
			}
			b.Send(`</stream:stream>`)
			b.Conn.Close()
			if store == "sqlite" {
				runXmppload(t, s, xmppload, pwA, pwB)
			}
		})
	}
}

func upTo2(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// runXmppload runs the offline scenario from A to B (offline) and checks
// its count: every message stored, then received by id.
func runXmppload(t *testing.T, s *server, xmppload, pwA, pwB string) {
	accounts := filepath.Join(t.TempDir(), "accounts")
	lines := numberA + "@" + domain + " " + pwA + "\n" + numberB + "@" + domain + " " + pwB + "\n"
	if err := os.WriteFile(accounts, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xmppload, "--addr", s.addr(), "--domain", domain, "--accounts", accounts,
		"--clients", "2", "--scenario", "offline", "--messages", "500", "--drain", "20s", "--duration", "60s").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("xmppload: %v\n%s\n%s", err, out, stderr)
	}
	var r struct {
		Sent, Received, Lost, Errors, Duplicates int64
		StoresPerSec                             float64 `json:"stores_per_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("xmppload output %q: %v", out, err)
	}
	if r.Sent != 500 || r.Received != 500 || r.Lost != 0 || r.Errors != 0 || r.Duplicates != 0 || r.StoresPerSec <= 0 {
		t.Fatalf("xmppload offline: %s", out)
	}
	t.Logf("xmppload offline: %s", out)
}
