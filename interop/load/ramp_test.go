// Package load runs cmd/xmppload against a real xmppd: the tool's ramp
// works end to end (issue 15's 100,000 idle sessions, here small).
package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dialtone/internal/testbin"
)

// TestIdleRampFromSources imports accounts with xmppctl (batched), starts
// xmppd on SQLite and ramps idle sessions with --src and --ramp: every
// client logs in, the ramp has rows with the server's RSS, and the
// server's sockets are spread over the three source addresses.
func TestIdleRampFromSources(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	const n = 300
	dir := t.TempDir()
	bins := testbin.Build(t, dir, "xmppd", "xmppctl", "xmppload")
	dataDir, err := os.MkdirTemp("", "ramp") // short: the admin socket lives there
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	c2s := testbin.FreePort(t)
	env := []string{"XMPPD_DATA_DIR=" + dataDir, "XMPPD_C2S_ADDR=127.0.0.1:" + c2s, "XMPPD_C2S_DIRECT_TLS_ADDR=",
		"XMPPD_HTTP_ADDR=127.0.0.1:" + testbin.FreePort(t), "XMPPD_S2S_ADDR=", "XMPPD_LOG_LEVEL=warn"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			env = append(env, kv)
		}
	}

	var numbers strings.Builder
	for i := range n {
		fmt.Fprintf(&numbers, "+8210%08d\n", 57000000+i)
	}
	numFile := filepath.Join(dir, "numbers")
	if err := os.WriteFile(numFile, []byte(numbers.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	imp := exec.CommandContext(ctx, bins["xmppctl"], "account", "import", numFile, "--print")
	imp.Env = env
	out, err := imp.Output()
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	var accounts strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	lines := 0
	for sc.Scan() {
		num, pw, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("import printed %q", sc.Text())
		}
		fmt.Fprintf(&accounts, "%s@localhost %s\n", num, pw)
		lines++
	}
	if lines != n {
		t.Fatalf("import printed %d accounts, want %d", lines, n)
	}
	accFile := filepath.Join(dir, "accounts")
	if err := os.WriteFile(accFile, []byte(accounts.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := exec.CommandContext(ctx, bins["xmppd"])
	srv.Env = env
	logf, err := os.Create(filepath.Join(dir, "xmppd.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("xmppd log:\n%s", b)
		}
	})
	addr := "127.0.0.1:" + c2s
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("xmppd not listening after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	load := exec.CommandContext(ctx, bins["xmppload"], "--addr", addr, "--accounts", accFile, "--mech", "SCRAM-SHA-1",
		"--scenario", "idle", "--clients", fmt.Sprint(n), "--concurrency", "30", "--src", "127.0.0.2-127.0.0.4",
		"--duration", "3s", "--ramp", "100ms", "--pid", fmt.Sprint(srv.Process.Pid))
	var stdout, stderr bytes.Buffer // read once xmppload is done
	load.Stdout, load.Stderr = &stdout, &stderr
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	// While the sessions are held (3 s), the server's sockets show where
	// they come from.
	var sources map[string]int
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		sources = peersOf(t, srv.Process.Pid, c2s)
		total := 0
		for _, k := range sources {
			total += k
		}
		if total >= n {
			break
		}
	}
	if err := load.Wait(); err != nil {
		t.Fatalf("xmppload: %v\n%s", err, stderr.String())
	}
	var res struct {
		Logins int `json:"logins"`
		Ramp   []struct {
			Sessions int64   `json:"sessions"`
			RSSKiB   uint64  `json:"rss_kib"`
			KiBEach  float64 `json:"kib_per_session"`
		} `json:"ramp"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if res.Logins != n {
		t.Errorf("%d logins, want %d", res.Logins, n)
	}
	if len(res.Ramp) == 0 || res.Ramp[len(res.Ramp)-1].RSSKiB == 0 {
		t.Fatalf("ramp rows %+v", res.Ramp)
	}
	// Round robin over the three, give or take the connections still
	// being made or closed when /proc was read (a login's dial that is
	// tried again takes the next address): each well over a quarter.
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		if sources[ip] < n/4 {
			t.Errorf("%d of the server's connections from %s, want about %d (all: %v)", sources[ip], ip, n/3, sources)
		}
	}
	t.Logf("sources %v; %d ramp rows, last %+v", sources, len(res.Ramp), res.Ramp[len(res.Ramp)-1])
}

// peersOf counts the established connections to port on the server's
// side by the client's address, from /proc/net/tcp.
func peersOf(t *testing.T, pid int, port string) map[string]int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(port, &p)
	local := fmt.Sprintf(":%04X", p)
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[1], local) || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		var a uint32
		fmt.Sscanf(strings.SplitN(f[2], ":", 2)[0], "%X", &a)
		// Little-endian hex of the address.
		out[fmt.Sprintf("%d.%d.%d.%d", a&0xff, a>>8&0xff, a>>16&0xff, a>>24)]++
	}
	return out
}
