// Package interop runs independent XMPP clients against a real xmppd.
package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"dialtone/internal/testbin"
)

// The shared helpers of the tests that run the built programs.
const python = testbin.Python

var (
	requireSlixmpp = testbin.RequireSlixmpp
	build          = testbin.Build
	freePort       = testbin.FreePort
)

// server is a running xmppd.
type server struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	log     string // path of its combined output
	env     []string
	dataDir string
	c2s     string
	tls     string
	http    string
}

// hermeticEnv is the caller's environment without XMPPD_* variables, plus vars.
// Later maps override earlier ones.
func hermeticEnv(vars map[string]string, more ...map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			env = append(env, kv)
		}
	}
	all := map[string]string{}
	for _, m := range append([]map[string]string{vars}, more...) {
		for k, v := range m {
			all[k] = v
		}
	}
	for k, v := range all {
		env = append(env, k+"="+v)
	}
	return env
}

// serverWithAccounts builds xmppd and xmppctl, starts xmppd in a temporary
// directory (with extra settings; nil: none) and makes the accounts of
// numbers with xmppctl; it returns the server, the directory and the
// passwords, in the order of numbers.
func serverWithAccounts(t *testing.T, extra map[string]string, numbers ...string) (*server, string, []string) {
	t.Helper()
	dir := t.TempDir()
	bins := build(t, dir, "xmppd", "xmppctl")
	s := startServer(t, bins["xmppd"], dir, extra)
	passwords := make([]string, len(numbers))
	for i, n := range numbers {
		passwords[i] = strings.TrimSpace(s.xmppctl(t, bins["xmppctl"], "account", "reset", n, "--print"))
	}
	return s, dir, passwords
}

func startServer(t *testing.T, bin, dir string, extra ...map[string]string) *server {
	t.Helper()
	// Short data dir path: the admin socket lives in it.
	dataDir, err := os.MkdirTemp("", "interop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	s := &server{
		log:     filepath.Join(dir, "xmppd.log"),
		dataDir: dataDir,
		c2s:     freePort(t),
		tls:     freePort(t),
		http:    freePort(t),
		done:    make(chan struct{}),
	}
	s.env = hermeticEnv(map[string]string{
		"XMPPD_DATA_DIR":            dataDir,
		"XMPPD_DOMAIN":              "localhost",
		"XMPPD_C2S_ADDR":            "127.0.0.1:" + s.c2s,
		"XMPPD_C2S_DIRECT_TLS_ADDR": "127.0.0.1:" + s.tls,
		"XMPPD_HTTP_ADDR":           "127.0.0.1:" + s.http,
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_DEFAULT_REGION":      "KR",
		"XMPPD_LOG_LEVEL":           "debug",
	}, extra...)
	logFile, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			s.dumpLog(t)
		}
	})
	s.waitHealthy(t, 30*time.Second)
	return s
}

func (s *server) dumpLog(t *testing.T) {
	b, _ := os.ReadFile(s.log)
	const max = 20000
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	t.Logf("xmppd output:\n%s", b)
}

func (s *server) waitHealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	url := "http://127.0.0.1:" + s.http + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("xmppd exited before it was healthy: %v", s.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmppd not healthy at %s after %v (last: %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that xmppd exits 0 (SPEC.md: "On SIGTERM
// the server sends system-shutdown to every stream ... and exits 0").
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("xmppd did not exit within 20 s of SIGTERM")
	}
	if s.waitErr != nil {
		t.Errorf("xmppd exit after SIGTERM: %v, want status 0", s.waitErr)
	}
}

// xmppctl runs the admin tool with the server's environment.
func (s *server) xmppctl(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xmppctl %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// chatResult is what interop/slixmpp_chat.py prints.
type chatResult struct {
	OK         bool              `json:"ok"`
	Slixmpp    string            `json:"slixmpp"`
	Error      string            `json:"error"`
	CertSHA256 string            `json:"cert_sha256"`
	Steps      []json.RawMessage `json:"steps"`
}

func TestSlixmppChat(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	dir := t.TempDir()
	bins := build(t, dir, "xmppd", "xmppctl")
	s := startServer(t, bins["xmppd"], dir)

	const (
		a         = "+821012345678"
		b         = "+821098765432"
		bNational = "010-9876-5432"
	)
	// Accounts made from national forms, as an operator would type them.
	aPassword := strings.TrimSpace(s.xmppctl(t, bins["xmppctl"], "account", "reset", "010-1234-5678", "--print"))
	bPassword := strings.TrimSpace(s.xmppctl(t, bins["xmppctl"], "account", "reset", bNational, "--print"))
	if aPassword == "" || bPassword == "" || strings.Contains(aPassword, "\n") {
		t.Fatalf("xmppctl passwords %q %q", aPassword, bPassword)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script := exec.CommandContext(ctx, python, "slixmpp_chat.py",
		"--host", "127.0.0.1", "--port", s.c2s, "--direct-tls-port", s.tls, "--domain", "localhost",
		"--a", a, "--a-password", aPassword,
		"--b", b, "--b-password", bPassword, "--b-national", bNational,
		"--timeout", "60", "--debug")
	var stdout, stderr bytes.Buffer
	script.Stdout, script.Stderr = &stdout, &stderr
	runErr := script.Run()
	t.Logf("slixmpp_chat.py:\n%s", stdout.String())
	defer func() {
		if t.Failed() { // slixmpp's debug log, the end of it
			b := stderr.Bytes()
			if len(b) > 30000 {
				b = b[len(b)-30000:]
			}
			t.Logf("slixmpp_chat.py stderr (end):\n%s", b)
		}
	}()
	var res chatResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON (%v); exit: %v", err, runErr)
	}
	if runErr != nil || !res.OK {
		t.Fatalf("slixmpp interop failed: %s (exit: %v)", res.Error, runErr)
	}
	if len(res.Steps) < 7 {
		t.Errorf("only %d steps ran", len(res.Steps))
	}

	// The certificate the client accepted is the one kept in the data dir.
	if pemBytes, err := os.ReadFile(filepath.Join(s.dataDir, "cert.pem")); err == nil {
		if block, _ := pem.Decode(pemBytes); block != nil {
			sum := sha256.Sum256(block.Bytes)
			if got := hex.EncodeToString(sum[:]); got != res.CertSHA256 {
				t.Errorf("client saw certificate %s, data dir holds %s", res.CertSHA256, got)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}

	s.stop(t)
}

// slixmpp's xep_0313 plugin pages through the archive of a real xmppd
// (interop/slixmpp_mam.py): newest first with RSM <before/>, oldest first
// from a start time; the archive ids are the XEP-0359 stanza-ids the
// receiver got.
func TestSlixmppMAM(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	const a, b = "+821012345678", "+821098765432"
	s, _, pw := serverWithAccounts(t, nil, a, b)
	aPassword, bPassword := pw[0], pw[1]
	var res struct {
		OK    bool     `json:"ok"`
		Error string   `json:"error"`
		Steps []string `json:"steps"`
	}
	runPython(t, 90*time.Second, &res, "slixmpp_mam.py", "--host", "127.0.0.1", "--port", s.c2s, "--domain", "localhost",
		"--a", a, "--a-password", aPassword, "--b", b, "--b-password", bPassword)
	if !res.OK || len(res.Steps) != 5 {
		t.Fatalf("slixmpp MAM: %s (steps %v)", res.Error, res.Steps)
	}
	s.stop(t)
}
