package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/admin"
	"dialtone/storage"
)

// The tests run the real binary, as an operator would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xmppctl-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "xmppctl")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		os.Stderr.Write(out)
		panic("go build: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a hermetic environment: none of the caller's XMPPD_* variables,
// a fresh data dir, default region KR.
type env struct {
	t    *testing.T
	dir  string
	vars map[string]string
}

func newEnv(t *testing.T) *env {
	// Short path: the admin socket lives in the data dir.
	dir, err := os.MkdirTemp("", "xc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &env{t: t, dir: dir, vars: map[string]string{
		"XMPPD_DATA_DIR":       dir,
		"XMPPD_DEFAULT_REGION": "KR",
	}}
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range e.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("xmppctl %v: %v", args, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// must runs xmppctl and fails the test unless it exits with code.
func (e *env) must(code int, args ...string) result {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != code {
		e.t.Fatalf("xmppctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func (e *env) store() *storage.DB {
	e.t.Helper()
	db, err := storage.Open(context.Background(), "", e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

var passwordLine = regexp.MustCompile(`^[A-Za-z0-9]{12}\n$`)

func TestResetPrintThenShow(t *testing.T) {
	e := newEnv(t)
	r := e.must(0, "account", "reset", "+821012345678", "--print")
	if !passwordLine.MatchString(r.stdout) {
		t.Fatalf("stdout %q, want the password alone on one line", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q, want nothing", r.stderr)
	}
	password := strings.TrimSpace(r.stdout)

	r = e.must(0, "account", "show", "+821012345678")
	want := regexp.MustCompile(`^number: \+821012345678\nstate: unclaimed\ncreated: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\nlast_login: never\nstored_messages: 0\nhidden: no\n$`)
	if !want.MatchString(r.stdout) {
		t.Errorf("show:\n%s", r.stdout)
	}

	// The printed password is the one stored.
	a, err := e.store().Account(context.Background(), "+821012345678")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Credentials.VerifyPassword(password) {
		t.Error("printed password does not match the stored credentials")
	}

	// A second reset changes it.
	r = e.must(0, "account", "reset", "--print", "+821012345678")
	if !passwordLine.MatchString(r.stdout) || strings.TrimSpace(r.stdout) == password {
		t.Errorf("second reset printed %q", r.stdout)
	}
	a, _ = e.store().Account(context.Background(), "+821012345678")
	if a.Credentials.VerifyPassword(password) {
		t.Error("old password still works after reset")
	}
}

func TestNationalForm(t *testing.T) {
	e := newEnv(t)
	e.must(0, "account", "reset", "010-1234-5678", "--print")
	for _, form := range []string{"+821012345678", "+82 10-1234-5678", "01012345678", "010-1234-5678"} {
		r := e.must(0, "account", "show", form)
		if !strings.HasPrefix(r.stdout, "number: +821012345678\n") {
			t.Errorf("show %q: %q", form, r.stdout)
		}
	}
	r := e.must(0, "account", "list")
	if r.stdout != "+821012345678\tunclaimed\n" {
		t.Errorf("list: %q", r.stdout)
	}
}

func TestInvalidNumber(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"account", "show", "12345"},
		{"account", "reset", "not-a-number", "--print"},
		{"account", "delete", "+1"},
		{"account", "hide", "hello"},
		{"account", "unhide"},
		{"account", "hide", "+821012345678", "+821012345679"},
		{"account", "hide", "+821012345678", "--print"},
		{"sms", "test", "+15551234567"}, // 555 is not an area code
		{"account", "reset", "+821012345678", "--print", "--loud"},
		{"account", "show"},
		{"account", "show", "+821012345678", "+821012345679"},
		{"account", "list", "--state", "sleeping"},
		{"account", "frobnicate"},
		{"account"},
		{"nonsense"},
		{},
	} {
		r := e.run("", args...)
		if r.code != 2 || r.stderr == "" || r.stdout != "" {
			t.Errorf("xmppctl %q: exit %d, stdout %q, stderr %q; want 2 and a message on stderr", args, r.code, r.stdout, r.stderr)
		}
	}
	r := e.must(2, "account", "show", "12345")
	if !strings.Contains(r.stderr, `"12345" is not a valid number`) {
		t.Errorf("stderr %q", r.stderr)
	}
	if r := e.must(0, "account", "list"); r.stdout != "" {
		t.Errorf("usage errors made accounts: %q", r.stdout)
	}
}

func TestAllowedRegions(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_ALLOWED_REGIONS"] = "KR"
	e.must(0, "account", "reset", "+821012345678", "--print")
	e.must(2, "account", "reset", "+12025550123", "--print")
}

func TestMissingAccount(t *testing.T) {
	e := newEnv(t)
	r := e.must(1, "account", "delete", "+821012345678")
	if !strings.Contains(r.stderr, "+821012345678 has no account") {
		t.Errorf("stderr %q", r.stderr)
	}
	e.must(1, "account", "show", "+821012345678")

	e.must(0, "account", "reset", "+821012345678", "--print")
	r = e.must(0, "account", "delete", "010 1234 5678")
	if r.stdout != "+821012345678: deleted\n" {
		t.Errorf("delete stdout %q", r.stdout)
	}
	e.must(1, "account", "show", "+821012345678")
	e.must(1, "account", "delete", "+821012345678")
}

func TestHelp(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_LOG_LEVEL"] = "loud" // help needs no valid environment
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"account", "--help"}, {"accounts", "-h"}, {"sms", "--help"},
		{"account", "show", "--help"},
		{"account", "list", "-h"},
		{"account", "reset", "+821012345678", "--help"},
		{"account", "delete", "--help"},
		{"account", "hide", "--help"},
		{"account", "unhide", "-h"},
		{"account", "import", "--help"},
		{"accounts", "sweep", "--help"},
		{"sms", "test", "-h"},
	} {
		r := e.run("", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("xmppctl %q: exit %d\nstdout %q\nstderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	r := e.must(0, "account", "import", "--help")
	if !strings.Contains(r.stdout, "nothing") || !strings.Contains(r.stdout, "--notify") {
		t.Errorf("import help does not explain invalid lines and options:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "dialtone.db")); err == nil {
		t.Error("--help opened the store")
	}
}

func TestBadConfig(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_LOG_LEVEL"] = "loud"
	r := e.must(1, "account", "list")
	if !strings.Contains(r.stderr, `XMPPD_LOG_LEVEL: unknown level "loud"`) {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestImportPrint(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(e.dir, "numbers.txt")
	os.WriteFile(file, []byte(`# customers
+821012345678
  010-2222-3333   # Kim, national form

+12025550123
+82 10 1234 5678
`), 0o644)
	r := e.must(0, "account", "import", file, "--print")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	wantNumbers := []string{"+821012345678", "+821022223333", "+12025550123"}
	if len(lines) != len(wantNumbers) {
		t.Fatalf("stdout %q, want %d lines", r.stdout, len(wantNumbers))
	}
	db := e.store()
	for i, l := range lines {
		number, password, ok := strings.Cut(l, " ")
		if !ok || number != wantNumbers[i] || !passwordLine.MatchString(password+"\n") {
			t.Errorf("line %q, want %s PASSWORD", l, wantNumbers[i])
			continue
		}
		a, err := db.Account(context.Background(), auth.Number(number))
		if err != nil {
			t.Fatal(err)
		}
		if a.State != auth.StateUnclaimed || !a.Credentials.VerifyPassword(password) {
			t.Errorf("%s: state %s, password matches %v", number, a.State, a.Credentials.VerifyPassword(password))
		}
	}
	if !strings.Contains(r.stderr, "repeats line 2") {
		t.Errorf("duplicate not reported: %q", r.stderr)
	}

	// Existing accounts are left alone.
	before, _ := db.Account(context.Background(), "+821012345678")
	r = e.run("+821012345678\n+821044445555\n", "account", "import", "-", "--print")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "+821044445555 ") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("second import: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "+821012345678 already has an account") {
		t.Errorf("stderr %q", r.stderr)
	}
	after, _ := db.Account(context.Background(), "+821012345678")
	if after.Generation != before.Generation {
		t.Error("import changed the password of an existing account")
	}
}

// A printed password was handed to someone: it is marked delivered, so
// that no notice replaces it; one made by a plain import is not, so the
// first notice brings the owner a password (SPEC.md "SMS texts").
func TestPrintedPasswordsAreDelivered(t *testing.T) {
	e := newEnv(t)
	e.must(0, "account", "reset", "+821012345678", "--print")
	if r := e.run("+821022223333\n", "account", "import", "-", "--print"); r.code != 0 {
		t.Fatalf("import --print: %d %s", r.code, r.stderr)
	}
	if r := e.run("+821044445555\n", "account", "import", "-"); r.code != 0 {
		t.Fatalf("import: %d %s", r.code, r.stderr)
	}
	db := e.store()
	for n, want := range map[auth.Number]bool{"+821012345678": true, "+821022223333": true, "+821044445555": false} {
		r, err := db.NoticeReceiver(context.Background(), n)
		if err != nil || !r.Exists || r.PasswordDelivered != want {
			t.Errorf("%s: %+v %v, want delivered %v", n, r, err, want)
		}
	}
}

func TestImportInvalidLines(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(e.dir, "numbers.txt")
	os.WriteFile(file, []byte("+821012345678\n\nnot a number\n+821022223333\n12\n"), 0o644)
	r := e.must(2, "account", "import", file, "--print")
	if !strings.Contains(r.stderr, "numbers.txt:3:") || !strings.Contains(r.stderr, "numbers.txt:5:") || !strings.Contains(r.stderr, "nothing imported") {
		t.Errorf("stderr %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	if r := e.must(0, "account", "list"); r.stdout != "" {
		t.Errorf("a file with invalid lines imported %q", r.stdout)
	}

	e.must(1, "account", "import", filepath.Join(e.dir, "missing.txt"))
	e.must(2, "account", "import", file, "--print", "--notify")
}

func TestImportNotify(t *testing.T) {
	e := newEnv(t)
	r := e.run("+821012345678\n+821022223333\n", "account", "import", "-", "--notify")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	texts := smsRecords(t, r.stderr)
	if len(texts) != 2 || texts[0]["to"] != "+821012345678" || texts[1]["to"] != "+821022223333" {
		t.Fatalf("SMS %v", texts)
	}
	for _, m := range texts {
		if m["purpose"] != "password" || !strings.HasPrefix(m["text"].(string), "Your localhost password is ") {
			t.Errorf("SMS %v", m)
		}
	}
}

// smsRecords returns the log gateway's JSON records found in stderr.
func smsRecords(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "sms" {
			out = append(out, rec)
		}
	}
	return out
}

func TestResetTexts(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_DOMAIN"] = "chat.example"
	r := e.must(0, "account", "reset", "010-1234-5678")
	if r.stdout != "+821012345678: unclaimed account created, password texted\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	texts := smsRecords(t, r.stderr)
	if len(texts) != 1 {
		t.Fatalf("stderr %q, want one SMS record", r.stderr)
	}
	m := texts[0]
	// With the one-tap link of SPEC.md "Web client and one-tap login",
	// under XMPPD_PUBLIC_URL, for the texted password.
	re := regexp.MustCompile(`^Your chat\.example password is ([A-Za-z0-9]{12})\. Log in with your phone number, or tap http://chat\.example:5280/l/([A-Za-z0-9_-]{22})$`)
	sub := re.FindStringSubmatch(m["text"].(string))
	if m["to"] != "+821012345678" || m["purpose"] != "password" || m["id"] == "" || sub == nil {
		t.Fatalf("SMS %v", m)
	}
	db := e.store()
	a, err := db.Account(context.Background(), "+821012345678")
	if err != nil || !a.Credentials.VerifyPassword(sub[1]) {
		t.Errorf("texted password does not work: %v", err)
	}
	hash, _ := auth.LinkTokenHash(sub[2])
	if l, err := db.LoginLink(context.Background(), hash); err != nil || l.Number != "+821012345678" ||
		a.LinkPassword(l.PasswordTag) != auth.CurrentPassword {
		t.Errorf("the link is not stored for the texted password: %+v %v", l, err)
	}

	// XMPPD_LOGIN_LINK_TTL=0: the text without a link.
	e.vars["XMPPD_LOGIN_LINK_TTL"] = "0"
	r = e.must(0, "account", "reset", "010-1234-5678")
	texts = smsRecords(t, r.stderr)
	if len(texts) != 1 || !regexp.MustCompile(`^Your chat\.example password is [A-Za-z0-9]{12}\. Log in with your phone number\.$`).MatchString(texts[0]["text"].(string)) {
		t.Fatalf("SMS without links: %v", texts)
	}
}

// webhook is a receiver of the webhook gateway that records what it got.
type webhook struct {
	mu   sync.Mutex
	got  []map[string]string
	fail bool
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var m map[string]string
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		http.Error(rw, "down", http.StatusServiceUnavailable)
		return
	}
	w.got = append(w.got, m)
}

func (w *webhook) received() []map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]string(nil), w.got...)
}

// Without a server, xmppctl sends through the configured gateway itself.
func TestResetWebhook(t *testing.T) {
	e := newEnv(t)
	wh := &webhook{}
	srv := httptest.NewServer(wh)
	defer srv.Close()
	e.vars["XMPPD_SMS_GATEWAY"] = "webhook"
	e.vars["XMPPD_SMS_WEBHOOK_URL"] = srv.URL + "/sms"
	r := e.must(0, "account", "reset", "+821012345678")
	if r.stdout != "+821012345678: unclaimed account created, password texted\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	got := wh.received()
	if len(got) != 1 || got[0]["to"] != "+821012345678" || got[0]["purpose"] != "password" || got[0]["id"] == "" {
		t.Fatalf("webhook got %v", got)
	}
	password, _, _ := strings.Cut(strings.TrimPrefix(got[0]["text"], "Your localhost password is "), ". Log in with your phone number")
	db := e.store()
	if a, err := db.Account(context.Background(), "+821012345678"); err != nil || !a.Credentials.VerifyPassword(password) {
		t.Fatalf("texted password %q does not log in: %v", password, err)
	}
	if left, _ := db.CountSMS(context.Background()); left != 0 {
		t.Errorf("%d SMS left in the outbox", left)
	}

	e.must(0, "sms", "test", "010-1234-5678")
	if got := wh.received(); len(got) != 2 || got[1]["purpose"] != "test" {
		t.Errorf("webhook got %v", got)
	}
}

// A gateway that refuses: the new password is in force and its SMS stays
// queued (for the server), and xmppctl says so with exit 1.
func TestResetGatewayDown(t *testing.T) {
	e := newEnv(t)
	wh := &webhook{fail: true}
	srv := httptest.NewServer(wh)
	defer srv.Close()
	e.vars["XMPPD_SMS_GATEWAY"] = "webhook"
	e.vars["XMPPD_SMS_WEBHOOK_URL"] = srv.URL + "/sms"
	r := e.must(1, "account", "reset", "+821012345678")
	if !strings.Contains(r.stderr, "not sent yet") || !strings.Contains(r.stderr, "queued") {
		t.Errorf("stderr %q", r.stderr)
	}
	db := e.store()
	due, err := db.DueSMS(context.Background(), time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || !due[0].Sealed || due[0].Attempts != 1 || strings.Contains(string(due[0].Body), "password") {
		t.Fatalf("outbox %+v %v, want the sealed SMS queued for retry", due, err)
	}
	e.must(0, "account", "show", "+821012345678")
	e.must(1, "sms", "test", "+821012345678")
}

func TestBadGatewayChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_SMS_GATEWAY"] = "pigeon"
	e.must(1, "account", "reset", "+821012345678")
	e.vars["XMPPD_SMS_GATEWAY"] = "log"
	e.must(1, "account", "show", "+821012345678") // nothing changed
}

func TestSMSTest(t *testing.T) {
	e := newEnv(t)
	r := e.must(0, "sms", "test", "010-1234-5678")
	texts := smsRecords(t, r.stderr)
	if len(texts) != 1 || texts[0]["purpose"] != "test" || texts[0]["to"] != "+821012345678" {
		t.Errorf("stderr %q", r.stderr)
	}
	e.must(1, "account", "show", "+821012345678") // a test SMS makes no account
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	e.must(0, "account", "reset", "+821012345678", "--print")
	e.must(0, "account", "reset", "+821022223333", "--print")
	e.must(0, "account", "reset", "+821044445555", "--print")
	if err := e.store().RecordLogin(context.Background(), "+821022223333", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := e.must(0, "accounts", "sweep"); r.stdout != "0 unclaimed account(s) released\n" {
		t.Errorf("sweep with the default TTL: %q", r.stdout)
	}
	time.Sleep(10 * time.Millisecond)
	e.vars["XMPPD_UNCLAIMED_ACCOUNT_TTL"] = "5ms"
	if r := e.must(0, "accounts", "sweep"); r.stdout != "2 unclaimed account(s) released\n" {
		t.Errorf("sweep: %q", r.stdout)
	}
	if r := e.must(0, "account", "list"); r.stdout != "+821022223333\tactive\n" {
		t.Errorf("left: %q", r.stdout)
	}
	e.vars["XMPPD_UNCLAIMED_ACCOUNT_TTL"] = "0s"
	r := e.must(0, "accounts", "sweep")
	if r.stdout != "0 unclaimed account(s) released\n" || !strings.Contains(r.stderr, "never released") {
		t.Errorf("sweep with TTL 0: %q %q", r.stdout, r.stderr)
	}
}

func TestListStates(t *testing.T) {
	e := newEnv(t)
	e.must(0, "account", "reset", "+821022223333", "--print")
	e.must(0, "account", "reset", "+821012345678", "--print")
	if err := e.store().RecordLogin(context.Background(), "+821022223333", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := e.must(0, "account", "list"); r.stdout != "+821012345678\tunclaimed\n+821022223333\tactive\n" {
		t.Errorf("list %q", r.stdout)
	}
	if r := e.must(0, "account", "list", "--state", "active"); r.stdout != "+821022223333\tactive\n" {
		t.Errorf("list active %q", r.stdout)
	}
	if r := e.must(0, "account", "list", "--state=unclaimed"); r.stdout != "+821012345678\tunclaimed\n" {
		t.Errorf("list unclaimed %q", r.stdout)
	}
	r := e.must(0, "account", "show", "+821022223333")
	if !regexp.MustCompile(`(?m)^state: active\ncreated: .*\nlast_login: \d{4}-`).MatchString(r.stdout) {
		t.Errorf("show %q", r.stdout)
	}
}

type kickRecorder struct {
	mu    sync.Mutex
	kicks []string
	wakes int
}

func (k *kickRecorder) Wake() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.wakes++
}

func (k *kickRecorder) Kick(ctx context.Context, number, condition string) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kicks = append(k.kicks, number+" "+condition)
	return 1, nil
}

func (k *kickRecorder) Forget(ctx context.Context, number string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kicks = append(k.kicks, number+" forget")
	return nil
}

func (k *kickRecorder) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.kicks...)
}

// TestResetAndDeleteCloseSessions stands in for the running server on
// the admin socket.
func TestResetAndDeleteCloseSessions(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(e.dir, "admin.sock")
	k := &kickRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Serve(ctx, sock, k, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() { cancel(); <-done }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("admin socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}

	e.must(0, "account", "reset", "010-1234-5678", "--print")
	r := e.must(0, "account", "delete", "+821012345678")
	if r.stdout != "+821012345678: deleted, 1 session(s) closed\n" {
		t.Errorf("delete stdout %q", r.stdout)
	}
	want := []string{"+821012345678 not-authorized", "+821012345678 not-authorized", "+821012345678 forget"}
	if got := k.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kicks %q, want %q", got, want)
	}

	// Texted: queued for the server, whose worker is woken; xmppctl does
	// not send it itself.
	r = e.must(0, "account", "reset", "010-1234-5678")
	if r.stdout != "+821012345678: unclaimed account created, password texted\n" || len(smsRecords(t, r.stderr)) != 0 {
		t.Errorf("reset: stdout %q stderr %q", r.stdout, r.stderr)
	}
	r = e.must(0, "sms", "test", "010-1234-5678")
	if !strings.Contains(r.stdout, "queued; the running server sends it") || len(smsRecords(t, r.stderr)) != 0 {
		t.Errorf("sms test: stdout %q stderr %q", r.stdout, r.stderr)
	}
	k.mu.Lock()
	wakes, kicks := k.wakes, len(k.kicks)
	k.mu.Unlock()
	if wakes != 2 || kicks != 4 {
		t.Errorf("server woken %d times, %d kicks and forgets; want 2 and 4", wakes, kicks)
	}
	due, err := e.store().DueSMS(context.Background(), time.Now(), 10)
	if err != nil || len(due) != 2 || due[0].Purpose != "password" || !due[0].Sealed || due[1].Purpose != "test" {
		t.Errorf("outbox %+v %v, want the password and the test SMS", due, err)
	}
}

// XMPPD_PASSWORD_LENGTH sets the length of the passwords xmppctl makes.
func TestPasswordLength(t *testing.T) {
	e := newEnv(t)
	e.vars["XMPPD_PASSWORD_LENGTH"] = "21"
	r := e.must(0, "account", "reset", "+821012345678", "--print")
	if got := len(strings.TrimSpace(r.stdout)); got != 21 {
		t.Fatalf("password %q has %d characters, want 21", r.stdout, got)
	}
}

// account hide and unhide set the opt-out of contact discovery, in any
// form of the number; show reports it; a number without an account is
// exit 1 and gets none.
func TestHideUnhide(t *testing.T) {
	e := newEnv(t)
	e.must(0, "account", "reset", "+821012345678", "--print")
	hidden := func() bool {
		t.Helper()
		h, err := e.store().Hidden(context.Background(), "+821012345678")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	r := e.must(0, "account", "hide", "010-1234-5678")
	if r.stdout != "+821012345678: hidden from contact discovery\n" || r.stderr != "" {
		t.Errorf("hide: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if !hidden() {
		t.Fatal("not hidden after hide")
	}
	if r := e.must(0, "account", "show", "+821012345678"); !strings.HasSuffix(r.stdout, "\nhidden: yes\n") {
		t.Errorf("show after hide: %q", r.stdout)
	}
	e.must(0, "account", "hide", "+821012345678") // again: still hidden
	if !hidden() {
		t.Fatal("a second hide unhid it")
	}
	r = e.must(0, "account", "unhide", "+82 10 1234 5678")
	if r.stdout != "+821012345678: found by contact discovery\n" {
		t.Errorf("unhide: stdout %q", r.stdout)
	}
	if hidden() {
		t.Fatal("still hidden after unhide")
	}
	for _, cmd := range []string{"hide", "unhide"} {
		r := e.must(1, "account", cmd, "+821099998888")
		if !strings.Contains(r.stderr, "+821099998888 has no account") {
			t.Errorf("%s without an account: stderr %q", cmd, r.stderr)
		}
	}
	if r := e.must(0, "account", "list"); r.stdout != "+821012345678\tunclaimed\n" {
		t.Errorf("hide made accounts: %q", r.stdout)
	}
}
