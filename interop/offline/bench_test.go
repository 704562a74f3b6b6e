package offline

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"dialtone/internal/testbin"
)

// TestBenchOffline compares durable offline stores/s (cmd/xmppload's
// offline scenario: 1000 messages to an offline account, then a ping)
// of this tree's xmppd with the one in $DIALTONE_BENCH_BASE (a directory
// with xmppd and xmppctl built from another commit), taking turns, on
// SQLite and PostgreSQL. Only when that variable is set: it is a
// measurement, not a check. $DIALTONE_BENCH_ROUNDS rounds (default 3).
func TestBenchOffline(t *testing.T) {
	base := os.Getenv("DIALTONE_BENCH_BASE")
	if base == "" {
		t.Skip("DIALTONE_BENCH_BASE not set")
	}
	rounds := 3
	if r := os.Getenv("DIALTONE_BENCH_ROUNDS"); r != "" {
		if _, err := fmtSscan(r, &rounds); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	xmppd, xmppctl := build(t, dir)
	xmppload := testbin.Build(t, dir, "xmppload")["xmppload"]
	servers := []struct{ name, xmppd, xmppctl string }{
		{"base", filepath.Join(base, "xmppd"), filepath.Join(base, "xmppctl")},
		{"new", xmppd, xmppctl},
	}
	for _, store := range []string{"sqlite", "postgres"} {
		rates := map[string][]float64{}
		for round := range rounds {
			for _, sv := range servers {
				s := newServer(t, sv.xmppd, sv.xmppctl, storeURL(t, store), newWebhook(t), groupEnv)
				s.start()
				pwA, pwB := s.account(numberA), s.account(numberB)
				s.activate(numberB, pwB)
				accounts := filepath.Join(t.TempDir(), "accounts")
				lines := numberA + "@" + domain + " " + pwA + "\n" + numberB + "@" + domain + " " + pwB + "\n"
				if err := os.WriteFile(accounts, []byte(lines), 0o600); err != nil {
					t.Fatal(err)
				}
				args := []string{"--addr", s.addr(), "--domain", domain, "--accounts", accounts, "--mech", "SCRAM-SHA-1",
					"--clients", "2", "--scenario", "offline", "--messages", "1000", "--drain", "30s", "--duration", "120s",
					"--pid", itoa(s.cmd.Process.Pid), "--label", sv.name}
				out, err := exec.Command(xmppload, args...).Output()
				if err != nil {
					t.Fatalf("%s %s round %d: xmppload: %v %s", sv.name, store, round, err, out)
				}
				var r struct {
					Lost         int64
					StoresPerSec float64 `json:"stores_per_s"`
					CPUPerMsg    float64 `json:"server_cpu_us_per_msg"`
				}
				if err := json.Unmarshal(out, &r); err != nil || r.Lost != 0 {
					t.Fatalf("%s: %v %s", sv.name, err, out)
				}
				rates[sv.name] = append(rates[sv.name], r.StoresPerSec)
				t.Logf("%s %s round %d: %.0f stores/s, server CPU %.1f µs/msg", store, sv.name, round, r.StoresPerSec, r.CPUPerMsg)
				s.stop()
			}
		}
		mb, mn := median(rates["base"]), median(rates["new"])
		t.Logf("%s: base median %.0f/s %v, new median %.0f/s %v: ratio %.2f", store, mb, rates["base"], mn, rates["new"], mn/mb)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func itoa(n int) string { return strconv.Itoa(n) }

func fmtSscan(s string, n *int) (int, error) { return fmt.Sscan(s, n) }
