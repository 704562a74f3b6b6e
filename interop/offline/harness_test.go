package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
	"dialtone/sms"
	"dialtone/storage"
)

// The numbers of the tests: A writes, B has an account and is offline,
// C has never used the service (latent) until A writes to it.
const (
	domain  = "localhost"
	numberA = "+821011112222"
	numberB = "+821033334444"
	numberC = "+821055556666"
)

// build compiles cmd/xmppd and cmd/xmppctl into dir.
func build(t *testing.T, dir string) (xmppd, xmppctl string) {
	bins := testbin.Build(t, dir, "xmppd", "xmppctl")
	return bins["xmppd"], bins["xmppctl"]
}

var freePort = testbin.FreePort

// ---------------------------------------------------------------------
// The SMS receiver: the webhook gateway's other end.

// smsRecord is one SMS as the webhook received it.
type smsRecord struct {
	ID      string `json:"id"`
	To      string `json:"to"`
	Text    string `json:"text"`
	Purpose string `json:"purpose"`
	At      time.Time
	Run     int // which run of the server had started when it arrived
}

// webhook records each SMS once by id (SPEC.md "SMS gateway webhook": a
// receiver that deduplicates on id sees each SMS once) and counts the
// repeated deliveries of an id.
type webhook struct {
	srv   *httptest.Server
	token string

	mu      sync.Mutex
	byID    map[string]*smsRecord
	order   []*smsRecord
	dups    map[string]int
	bad     []string
	run     int
	down    int             // the run of the server during which the gateway is slow and down, 0: none
	refused map[string]bool // ids refused
	hung    bool            // a request was held while down
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{token: "offline-test-token", byID: map[string]*smsRecord{}, dups: map[string]int{}, refused: map[string]bool{}}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) url() string { return w.srv.URL + "/sms" }

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	var m smsRecord
	body, err := readAll(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	problem := ""
	switch {
	case err != nil:
		problem = "reading the request: " + err.Error()
	case r.Method != http.MethodPost || r.URL.Path != "/sms":
		problem = r.Method + " " + r.URL.Path
	case r.Header.Get("Authorization") != "Bearer "+w.token:
		problem = "Authorization " + strconv.Quote(r.Header.Get("Authorization"))
	case json.Unmarshal(body, &m) != nil:
		problem = "not JSON: " + string(body)
	case m.ID == "" || m.To == "" || m.Text == "" || m.Purpose == "":
		problem = "a field is missing: " + string(body)
	}
	if problem != "" {
		// Answered 2xx all the same: a bad request is reported by the
		// test, not retried for ever.
		w.bad = append(w.bad, problem)
		rw.WriteHeader(http.StatusOK)
		return
	}
	if w.run == w.down {
		// The gateway is slow, then down: the first request is held
		// without an answer until the server goes away (or 12 s, past the
		// gateway's 10 s timeout), the others are refused. Each SMS must
		// stay queued and come again.
		w.refused[m.ID] = true
		if !w.hung {
			w.hung = true
			w.mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-time.After(12 * time.Second):
			}
			w.mu.Lock()
		}
		http.Error(rw, "gateway down for the test", http.StatusServiceUnavailable)
		return
	}
	if prev, ok := w.byID[m.ID]; ok {
		w.dups[m.ID]++
		if prev.To != m.To || prev.Text != m.Text || prev.Purpose != m.Purpose {
			w.bad = append(w.bad, fmt.Sprintf("id %s sent again with other content: %+v, first %+v", m.ID, m, *prev))
		}
	} else {
		m.At, m.Run = time.Now(), w.run
		w.byID[m.ID] = &m
		w.order = append(w.order, &m)
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Write([]byte(`{"status":"queued"}`))
}

func readAll(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20))
	return b.Bytes(), err
}

// setRun marks the SMS that arrive from now on with run.
func (w *webhook) setRun(run int) {
	w.mu.Lock()
	w.run = run
	w.mu.Unlock()
}

// to returns the distinct SMS to number of purpose, in order of arrival.
func (w *webhook) to(number, purpose string) []smsRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []smsRecord
	for _, m := range w.order {
		if m.To == number && m.Purpose == purpose {
			out = append(out, *m)
		}
	}
	return out
}

// refusedIDs returns the ids of the SMS refused while the gateway was down.
func (w *webhook) refusedIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id := range w.refused {
		out = append(out, id)
	}
	return out
}

func (w *webhook) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.byID[id]
	return ok
}

func (w *webhook) all() []smsRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]smsRecord, len(w.order))
	for i, m := range w.order {
		out[i] = *m
	}
	return out
}

// duplicates is how many times an id came again, in all.
func (w *webhook) duplicates() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, d := range w.dups {
		n += d
	}
	return n
}

// check fails the test for every malformed request the receiver saw.
func (w *webhook) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.bad {
		t.Errorf("webhook: bad SMS request: %s", b)
	}
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The notice texts of SPEC.md "SMS texts", previews on.
var (
	reFirstNotice = regexp.MustCompile(`^New message from (\+\d+) on ` + regexp.QuoteMeta(domain) + `: "(.*)"\.$`)
	// With the one-tap link (SPEC.md "Web client and one-tap login").
	rePasswordNotice = regexp.MustCompile(`^New message from (\+\d+) on ` + regexp.QuoteMeta(domain) + `: "(.*)"\. Log in with your phone number and password (\S+), or tap http://\S+/l/[A-Za-z0-9_-]{22}$`)
	reFoldedNotice   = regexp.MustCompile(`^(\d+) new messages? from (\+\d+) on ` + regexp.QuoteMeta(domain) + `\.$`)
)

// notice is a notice SMS understood.
type notice struct {
	smsRecord
	Sender   string
	Preview  string // "" for a folded notice
	Password string // only in the first notice to an unclaimed account
	Count    int    // messages it tells of: 1, or N of a folded notice
}

// parseNotice reads a notice text; ok is false for a text of no known form.
func parseNotice(m smsRecord) (n notice, ok bool) {
	n.smsRecord = m
	if g := rePasswordNotice.FindStringSubmatch(m.Text); g != nil {
		n.Sender, n.Preview, n.Password, n.Count = g[1], g[2], g[3], 1
		return n, true
	}
	if g := reFirstNotice.FindStringSubmatch(m.Text); g != nil {
		n.Sender, n.Preview, n.Count = g[1], g[2], 1
		return n, true
	}
	if g := reFoldedNotice.FindStringSubmatch(m.Text); g != nil {
		c, _ := strconv.Atoi(g[1])
		n.Sender, n.Count = g[2], c
		if (c == 1) != strings.HasPrefix(m.Text, "1 new message ") {
			return n, false // "1 new messages" or "2 new message"
		}
		return n, true
	}
	return n, false
}

// notices returns the distinct notices to number, in order of arrival,
// failing the test for a notice text of no form SPEC.md gives.
func (w *webhook) notices(t *testing.T, number string) []notice {
	t.Helper()
	var out []notice
	for _, m := range w.to(number, "notice") {
		n, ok := parseNotice(m)
		if !ok {
			t.Errorf("notice to %s has a text of no form SPEC.md gives: %q", number, m.Text)
			continue
		}
		out = append(out, n)
	}
	return out
}

// counted is the number of messages the notices tell of.
func counted(ns []notice) int {
	c := 0
	for _, n := range ns {
		c += n.Count
	}
	return c
}

// ---------------------------------------------------------------------
// The server as a child process.

type server struct {
	t       *testing.T
	xmppd   string
	xmppctl string
	env     []string
	dataDir string
	dbURL   string // "" for SQLite in dataDir
	c2s     string
	tls     string
	http    string
	logPath string
	wh      *webhook

	run     int // how many times it was started
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// newServer prepares (does not start) an xmppd on a fresh data dir with
// the webhook gateway; dbURL "" means SQLite in the data dir. vars are
// added to the environment.
func newServer(t *testing.T, xmppd, xmppctl, dbURL string, wh *webhook, vars map[string]string) *server {
	t.Helper()
	// A short path: the admin socket lives in the data dir.
	dataDir, err := os.MkdirTemp("", "offl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	s := &server{
		t: t, xmppd: xmppd, xmppctl: xmppctl, dataDir: dataDir, dbURL: dbURL, wh: wh,
		c2s: freePort(t), tls: freePort(t), http: freePort(t),
		logPath: filepath.Join(t.TempDir(), "xmppd.log"),
	}
	env := map[string]string{
		"XMPPD_DATA_DIR":            dataDir,
		"XMPPD_DATABASE_URL":        dbURL,
		"XMPPD_DOMAIN":              domain,
		"XMPPD_C2S_ADDR":            "127.0.0.1:" + s.c2s,
		"XMPPD_C2S_DIRECT_TLS_ADDR": "127.0.0.1:" + s.tls,
		"XMPPD_HTTP_ADDR":           "127.0.0.1:" + s.http,
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_DEFAULT_REGION":      "KR",
		"XMPPD_SMS_GATEWAY":         "webhook",
		"XMPPD_SMS_WEBHOOK_URL":     wh.url(),
		"XMPPD_SMS_WEBHOOK_TOKEN":   wh.token,
		"XMPPD_LOG_LEVEL":           "info",
	}
	for k, v := range vars {
		env[k] = v
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			s.env = append(s.env, kv)
		}
	}
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}
	t.Cleanup(func() {
		if s.running() {
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			s.dumpLog()
		}
	})
	return s
}

func (s *server) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// start runs xmppd and waits until /healthz answers 200.
func (s *server) start() {
	t := s.t
	t.Helper()
	// A port picked free may be taken by another process before xmppd
	// binds it: a first start that fails so goes again on new ports
	// (no client knows the old ones yet).
	for try := 1; ; try++ {
		if s.launch() {
			return
		}
		if s.run > 1 || try == 3 || !s.portTaken() {
			t.Fatalf("xmppd (run %d) exited before it was healthy: %v", s.run, s.waitErr)
		}
		t.Logf("xmppd (run %d): a port was taken meanwhile; trying new ports", s.run)
		s.c2s, s.tls, s.http = freePort(t), freePort(t), freePort(t)
		for i, kv := range s.env {
			switch k, _, _ := strings.Cut(kv, "="); k {
			case "XMPPD_C2S_ADDR":
				s.env[i] = k + "=127.0.0.1:" + s.c2s
			case "XMPPD_C2S_DIRECT_TLS_ADDR":
				s.env[i] = k + "=127.0.0.1:" + s.tls
			case "XMPPD_HTTP_ADDR":
				s.env[i] = k + "=127.0.0.1:" + s.http
			}
		}
		s.run--
	}
}

// portTaken reports whether xmppd's log says a listener's port was in
// use.
func (s *server) portTaken() bool {
	b, err := os.ReadFile(s.logPath)
	return err == nil && strings.Contains(string(b), "address already in use")
}

// launch starts xmppd and waits until it is healthy; false when it exited
// first.
func (s *server) launch() bool {
	t := s.t
	t.Helper()
	if s.running() {
		t.Fatal("xmppd already runs")
	}
	s.run++
	s.wh.setRun(s.run)
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logFile, "=== run %d of xmppd, %s\n", s.run, time.Now().Format(time.RFC3339Nano))
	s.cmd = exec.Command(s.xmppd)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// Killed with the test binary, should that die first.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.done, s.waitErr = done, nil
	go func(cmd *exec.Cmd) {
		err := cmd.Wait()
		logFile.Close()
		s.waitErr = err
		close(done)
	}(s.cmd)
	return s.waitHealthy(30 * time.Second)
}

// waitHealthy waits for /healthz to answer 200; false when xmppd exited
// first.
func (s *server) waitHealthy(timeout time.Duration) bool {
	t := s.t
	t.Helper()
	url := "http://127.0.0.1:" + s.http + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		if !s.running() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmppd (run %d) not healthy at %s after %v (last: %v)", s.run, url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends xmppd with SIGKILL, sent to its PID, and waits until it is gone.
func (s *server) kill() {
	t := s.t
	t.Helper()
	if err := syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL to xmppd (pid %d): %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("xmppd still there 10 s after SIGKILL")
	}
}

// stop sends SIGTERM and checks that xmppd exits 0 (SPEC.md).
func (s *server) stop() {
	t := s.t
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

func (s *server) dumpLog() {
	b, _ := os.ReadFile(s.logPath)
	const max = 30000
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	s.t.Logf("xmppd output (all runs):\n%s", b)
}

// ctl runs xmppctl with the server's environment and returns its stdout.
func (s *server) ctl(args ...string) string {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.xmppctl, args...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xmppctl %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// account makes number an account with a password printed, not texted.
func (s *server) account(number string) string {
	s.t.Helper()
	pw := strings.TrimSpace(s.ctl("account", "reset", number, "--print"))
	if pw == "" || strings.ContainsAny(pw, " \n") {
		s.t.Fatalf("xmppctl account reset %s --print: %q", number, pw)
	}
	return pw
}

// accountShow returns the key: value lines of xmppctl account show.
func (s *server) accountShow(number string) map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(s.ctl("account", "show", number), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// noNoticeWindows waits, at most 10 s, until none of the numbers has a
// notice window open, as the store itself says.
func (s *server) noNoticeWindows(numbers ...string) {
	t := s.t
	t.Helper()
	ctx := t.Context()
	db, err := storage.Open(ctx, s.dbURL, s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var open []string
	gone := func() bool {
		open = nil
		for _, n := range numbers {
			if _, err := db.NoticeWindow(ctx, n); !errors.Is(err, auth.ErrNotFound) {
				open = append(open, fmt.Sprintf("%s (%v)", n, err))
			}
		}
		return len(open) == 0
	}
	if !waitFor(10*time.Second, gone) {
		t.Fatalf("notice windows still open 10 s on: %v", open)
	}
}

// barrierNumber receives the test SMS of smsBarrier.
const barrierNumber = "+821055550123"

// smsBarrier has xmppctl queue a test SMS to number and waits, at most
// 20 s, until the webhook got it: the server's worker sends what is due
// oldest first, so every SMS queued before it has come by then.
func (s *server) smsBarrier(number string) {
	s.t.Helper()
	before := len(s.wh.to(number, "test"))
	s.ctl("sms", "test", number)
	if !waitFor(20*time.Second, func() bool { return len(s.wh.to(number, "test")) > before }) {
		s.t.Fatalf("the test SMS to %s did not come within 20 s", number)
	}
}

func (s *server) addr() string { return "127.0.0.1:" + s.c2s }

// activate logs number in once, without presence, and closes the
// connection, so that its account is active (SPEC.md "Accounts") and a
// notice to it carries no password; the session is gone when it returns.
func (s *server) activate(number, password string) {
	t := s.t
	t.Helper()
	c := xmpptest.Login(t, s.addr(), number, password, "once")
	c.Send(`</stream:stream>`)
	if _, err := c.TryNext(xmpptest.Timeout); !errors.Is(err, xmpptest.ErrStreamEnd) {
		t.Fatalf("%s: closing the stream: %v, want the server's </stream:stream>", number, err)
	}
	c.Conn.Close()
	if st := s.accountShow(number)["state"]; st != "active" {
		t.Fatalf("%s is %q after logging in, want active", number, st)
	}
}

// ---------------------------------------------------------------------
// The store, read directly while the server is down.

// storeState is what the store held for some owners after a kill.
type storeState struct {
	messages map[string][]int // owner → message numbers stored, oldest first
	pending  []sms.Pending    // the SMS outbox
}

// readStore opens the server's store (it must not run) and reads the
// offline messages of owners and the SMS outbox.
func (s *server) readStore(owners ...string) storeState {
	t := s.t
	t.Helper()
	if s.running() {
		t.Fatal("readStore while xmppd runs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := storage.Open(ctx, s.dbURL, s.dataDir)
	if err != nil {
		t.Fatalf("opening the store after the kill: %v", err)
	}
	defer db.Close()
	st := storeState{messages: map[string][]int{}}
	for _, o := range owners {
		msgs, err := db.OfflineMessages(ctx, o, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			n, err := numberOfStanza(m.Stanza)
			if err != nil {
				t.Fatalf("stored message %d of %s: %v: %s", m.ID, o, err, m.Stanza)
			}
			st.messages[o] = append(st.messages[o], n)
		}
	}
	st.pending, err = db.DueSMS(ctx, time.Now().Add(365*24*time.Hour), 100000)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ---------------------------------------------------------------------
// Messages.

// reNumber finds the number in a test message's body.
var reNumber = regexp.MustCompile(`#(\d+)\b`)

// body is the text of message n.
func body(n int, pad string) string { return fmt.Sprintf("offline test message #%d%s", n, pad) }

func numberOfBody(b string) (int, error) {
	g := reNumber.FindStringSubmatch(b)
	if g == nil {
		return 0, fmt.Errorf("no message number in body %q", b)
	}
	return strconv.Atoi(g[1])
}

func numberOfStanza(st []byte) (int, error) {
	var m struct {
		Body string `xml:"body"`
	}
	if err := xml.Unmarshal(st, &m); err != nil {
		return 0, err
	}
	return numberOfBody(m.Body)
}

// got is one message as a receiver read it.
type got struct {
	N         int
	From, To  string
	Type      string
	Body      string
	HasDelay  bool
	DelayFrom string
	Stamp     time.Time
	Session   int // which of the receiver's sessions read it
}

// parseGot reads a delivered <message/>.
func parseGot(e xmpptest.Elem) (got, error) {
	var m struct {
		Body  string `xml:"body"`
		Delay *struct {
			From  string `xml:"from,attr"`
			Stamp string `xml:"stamp,attr"`
		} `xml:"urn:xmpp:delay delay"`
	}
	if err := xml.Unmarshal([]byte("<m>"+e.Inner+"</m>"), &m); err != nil {
		return got{}, err
	}
	g := got{From: e.Attr("from"), To: e.Attr("to"), Type: e.Attr("type"), Body: m.Body}
	if m.Delay != nil {
		g.HasDelay, g.DelayFrom = true, m.Delay.From
		if ts, err := time.Parse(time.RFC3339Nano, m.Delay.Stamp); err == nil {
			g.Stamp = ts
		} else {
			return g, fmt.Errorf("delay stamp %q: %v", m.Delay.Stamp, err)
		}
	}
	n, err := numberOfBody(m.Body)
	g.N = n
	return g, err
}

func bare(j string) string {
	b, _, _ := strings.Cut(j, "/")
	return b
}

// answeredPing answers e if it is a ping from the server, as a client
// does: the server removes stored messages once the client answered the
// ping that follows them.
func answeredPing(c *xmpptest.Client, e xmpptest.Elem) bool {
	if e.XMLName.Local != "iq" || e.Attr("type") != "get" || e.Attr("from") != domain || !strings.Contains(e.Inner, "urn:xmpp:ping") {
		return false
	}
	c.Send(`<iq type='result' id='` + e.Attr("id") + `' to='` + domain + `'/>`)
	return true
}

// collect reads the stored messages a receiver gets after initial
// presence until want arrived and two more ping round trips bring none
// (a message that came twice would show then), or limit passes. Every
// read waits for a ping answer, so no read times out on a healthy server
// (a timed-out read would spoil the client's XML decoder). The server's
// pings are answered. Other elements than messages, ping answers and the
// receiver's own presence fail the test.
func collect(t *testing.T, c *xmpptest.Client, session, want int, limit time.Duration) []got {
	t.Helper()
	var msgs []got
	deadline := time.Now().Add(limit)
	quiet := 0
	for round := 1; time.Now().Before(deadline); round++ {
		before := len(msgs)
		id := fmt.Sprintf("collect-%d", round)
		c.Send(`<iq type='get' id='` + id + `' to='` + domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
		for {
			e, err := c.TryNext(10 * time.Second)
			if err != nil {
				t.Fatalf("%s: reading stored messages (%d so far): %v", c.JID, len(msgs), err)
			}
			if e.XMLName.Local == "iq" && e.Attr("id") == id {
				break
			}
			if e.XMLName.Local == "presence" && bare(e.Attr("from")) == bare(c.JID) {
				continue // its own presence, sent to all its resources
			}
			if answeredPing(c, e) {
				continue
			}
			if e.XMLName.Local != "message" {
				t.Errorf("%s: unexpected %v", c.JID, e)
				continue
			}
			g, err := parseGot(e)
			if err != nil {
				t.Errorf("%s: %v in %v", c.JID, err, e)
			}
			g.Session = session
			msgs = append(msgs, g)
		}
		if len(msgs) > before {
			quiet = 0
			continue
		}
		if len(msgs) >= want {
			quiet++
			if quiet >= 2 {
				return msgs
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return msgs
}

// checkStamps checks the XEP-0203 stamps of delivered messages: from the
// domain, at a time within [from, to], not decreasing.
func checkStamps(t *testing.T, who string, msgs []got, from, to time.Time) {
	t.Helper()
	var last time.Time
	for _, m := range msgs {
		switch {
		case !m.HasDelay:
			t.Errorf("%s: message #%d has no XEP-0203 delay", who, m.N)
			continue
		case m.DelayFrom != domain:
			t.Errorf("%s: message #%d: delay from %q, want %q", who, m.N, m.DelayFrom, domain)
		case m.Stamp.Before(from.Add(-time.Second)) || m.Stamp.After(to.Add(time.Second)):
			t.Errorf("%s: message #%d: delay stamp %s outside the test's %s … %s", who, m.N,
				m.Stamp.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
		case m.Stamp.Before(last):
			t.Errorf("%s: message #%d: delay stamp %s before the previous message's %s", who, m.N, m.Stamp, last)
		}
		last = m.Stamp
	}
}
