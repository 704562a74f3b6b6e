package sms_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"dialtone/sms"
	"dialtone/storage"
)

var testKey = bytes.Repeat([]byte{0x42}, sms.KeySize)

// openStore opens the SQLite store in dir, closed when the test ends.
func openStore(t *testing.T, dir string) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// hit is one request a test webhook received.
type hit struct {
	at  time.Time
	sms map[string]string
}

// webhook is a receiver that refuses (503) the first failures requests,
// then accepts; it records every request.
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	hits     []hit
	failures int
	arrived  chan struct{} // one value per accepted SMS
}

func newWebhook(t *testing.T, failures int) *webhook {
	w := &webhook{failures: failures, arrived: make(chan struct{}, 100)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var m map[string]string
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.hits = append(w.hits, hit{time.Now(), m})
		refuse := len(w.hits) <= w.failures
		w.mu.Unlock()
		if refuse {
			http.Error(rw, "try later", http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusAccepted)
		w.arrived <- struct{}{}
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhook) got() []hit {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]hit(nil), w.hits...)
}

// wait waits for n accepted SMS.
func (w *webhook) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-w.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("SMS not accepted in time; requests so far: %+v", w.got())
		}
	}
}

// start runs s until the test ends (or stop is called) and checks that
// Run returns nil.
func start(t *testing.T, s *sms.Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testBackoff(attempt int) time.Duration { return 40 * time.Millisecond << (attempt - 1) }

func enqueue(t *testing.T, db *storage.DB, m sms.SMS, key []byte) sms.Pending {
	t.Helper()
	p, err := sms.NewPending(m, time.Now(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.EnqueueSMS(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 4: 40 * time.Second,
		5: 60 * time.Second, 6: 60 * time.Second, 1000: 60 * time.Second,
	} {
		if got := sms.DefaultBackoff(attempt); got != want {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", attempt, got, want)
		}
	}
}

// A receiver that fails the first 3 times gets the SMS 4 times with the
// same id, spaced by the backoff, accepts it once, and then hears no more.
func TestSenderRetries(t *testing.T) {
	const failures = 3
	db := openStore(t, t.TempDir())
	hook := newWebhook(t, failures)
	reg := prometheus.NewPedanticRegistry()
	metrics := sms.NewMetrics(reg)
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey,
		Log: quietLog(), Metrics: metrics, Backoff: testBackoff}
	start(t, s)

	m := sms.SMS{ID: "sms-1", To: "+821012345678", Text: "New message from +15551234567 on example.com.", Purpose: sms.PurposeNotice}
	queued := enqueue(t, db, m, nil)
	s.Wake()
	hook.wait(t, 1)
	// A second SMS, due at once, goes out after the first was deleted, in
	// the worker's next pass over what is due: a wrong extra attempt of
	// the first, still due, would have come by then.
	enqueue(t, db, sms.SMS{ID: "sms-2", To: m.To, Text: "later", Purpose: sms.PurposeTest}, nil)
	s.Wake()
	hook.wait(t, 1)

	hits := hook.got()
	if len(hits) != failures+2 || hits[failures+1].sms["id"] != "sms-2" {
		t.Fatalf("%d requests, want %d for sms-1, then sms-2: %v", len(hits), failures+1, hits)
	}
	hits = hits[:failures+1]
	for i, h := range hits {
		want := map[string]string{"id": "sms-1", "to": m.To, "text": m.Text, "purpose": "notice"}
		if len(h.sms) != len(want) || h.sms["id"] != want["id"] || h.sms["to"] != want["to"] ||
			h.sms["text"] != want["text"] || h.sms["purpose"] != want["purpose"] {
			t.Errorf("request %d: %v, want %v", i, h.sms, want)
		}
		if i == 0 {
			continue
		}
		// The store keeps microseconds; the worker may wake a little late,
		// never early.
		gap, min := h.at.Sub(hits[i-1].at), testBackoff(i)-time.Millisecond
		if gap < min || gap > min+2*time.Second {
			t.Errorf("attempt %d came %v after the one before, want about %v", i+1, gap, testBackoff(i))
		}
	}
	if first := hits[0].at.Sub(queued.Created); first > 5*time.Second {
		t.Errorf("first attempt %v after queueing", first)
	}
	// The worker removes an SMS, and counts what is left, after the
	// gateway's answer.
	waitFor(t, func() bool {
		left, err := db.CountSMS(t.Context())
		return err == nil && left == 0 && value(metrics.Pending) == 0
	})
	if v := value(metrics.Sent.WithLabelValues("notice")); v != 1 {
		t.Errorf("sms_sent_total{notice} = %v", v)
	}
	if v := value(metrics.Failures.WithLabelValues("notice")); v != failures {
		t.Errorf("sms_send_failures_total{notice} = %v", v)
	}
	families, err := reg.Gather()
	series := map[string]int{}
	for _, f := range families {
		series[f.GetName()] = len(f.GetMetric())
	}
	if err != nil || series["sms_sent_total"] != 4 || series["sms_send_failures_total"] != 4 || series["sms_outbox_pending"] != 1 {
		t.Errorf("gathered %v (%v), want 4 purposes for each counter and the gauge", series, err)
	}
}

// What was pending when the server stopped goes out after a restart: a
// new Sender over the same SQLite file sends it, with the same id, and the
// attempts made before the restart are kept.
func TestSenderRestart(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer down.Close()
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: down.URL}, Key: testKey, Log: quietLog(),
		Backoff: func(int) time.Duration { return time.Hour }}
	stop := start(t, s)
	enqueue(t, db, sms.SMS{ID: "tried", To: "+15551230001", Text: "one", Purpose: sms.PurposeTest}, nil)
	s.Wake()
	waitFor(t, func() bool {
		due, err := db.DueSMS(t.Context(), time.Now().Add(2*time.Hour), 10)
		return err == nil && len(due) == 1 && due[0].Attempts == 1
	})
	stop()
	// Queued while no worker runs (xmppctl, or a crash before sending).
	enqueue(t, db, sms.SMS{ID: "never-tried", To: "+15551230002", Text: "Your localhost password is abcDEF23456.", Purpose: sms.PurposePassword}, testKey)
	db.Close()

	db = openStore(t, dir)
	hook := newWebhook(t, 0)
	// A clock two hours on makes the first message due again.
	s = &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey, Log: quietLog(),
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	start(t, s)
	hook.wait(t, 2)
	ids := map[string]string{}
	for _, h := range hook.got() {
		ids[h.sms["id"]] = h.sms["text"]
	}
	if len(ids) != 2 || ids["tried"] != "one" || ids["never-tried"] != "Your localhost password is abcDEF23456." {
		t.Errorf("after the restart the receiver got %v", ids)
	}
	// The receiver has them; the worker deletes each once it has the answer.
	waitFor(t, func() bool { n, err := db.CountSMS(t.Context()); return err == nil && n == 0 })
}

// value reads a counter or gauge.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A gateway that never answers holds up neither EnqueueSMS nor Wake: the
// worker holds no lock on the store while it waits.
func TestDeadGatewayDoesNotBlockEnqueue(t *testing.T) {
	db := openStore(t, t.TempDir())
	inFlight := make(chan struct{}, 10)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight <- struct{}{}
		<-release
	}))
	defer hang.Close()
	defer close(release)
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hang.URL}, Key: testKey, Log: quietLog()}
	start(t, s)
	enqueue(t, db, sms.SMS{ID: "stuck", To: "+15551230010", Text: "x", Purpose: sms.PurposeNotice}, nil)
	s.Wake()
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not try the first message")
	}
	begin := time.Now()
	for i := range 20 {
		enqueue(t, db, sms.SMS{ID: "more-" + string(rune('a'+i)), To: "+15551230011", Text: "y", Purpose: sms.PurposeNotice}, nil)
		s.Wake()
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("20 enqueues took %v while the gateway hung", d)
	}
	if n, err := db.CountSMS(t.Context()); err != nil || n != 21 {
		t.Errorf("outbox: %d, %v; want 21", n, err)
	}
}

// A password SMS is stored sealed: neither the row nor the database files
// hold its text; the gateway gets the plain text.
func TestSealedNeverStoredInPlaintext(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir)
	const password = "Zq7xKp3mWv9R"
	text := sms.PasswordText("example.com", password)
	p := enqueue(t, db, sms.SMS{ID: "pw-1", To: "+821012345678", Text: text, Purpose: sms.PurposePassword}, testKey)
	if !p.Sealed {
		t.Fatal("NewPending with a key did not seal")
	}

	raw, err := sql.Open("sqlite", filepath.Join(dir, "dialtone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var body []byte
	var sealed bool
	if err := raw.QueryRow(`SELECT body, sealed FROM sms_outbox WHERE id = 'pw-1'`).Scan(&body, &sealed); err != nil {
		t.Fatal(err)
	}
	if !sealed || bytes.Contains(body, []byte(password)) || bytes.Contains(body, []byte("password is")) {
		t.Fatalf("stored row: sealed %v, body %q", sealed, body)
	}
	if plain, err := sms.Open(testKey, body); err != nil || string(plain) != text {
		t.Fatalf("stored body opens to %q, %v", plain, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "dialtone.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(password)) {
			t.Errorf("%s holds the password in plain text", filepath.Base(f))
		}
	}

	hook := newWebhook(t, 0)
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey, Log: quietLog()}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if hits := hook.got(); len(hits) != 1 || hits[0].sms["text"] != text {
		t.Fatalf("gateway got %+v", hits)
	}
}

// Flush sends what is due once and reports what was not accepted, which
// stays queued; messages not yet due are left alone.
func TestFlush(t *testing.T) {
	db := openStore(t, t.TempDir())
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if bytes.Contains(b, []byte("refuse")) {
			http.Error(w, "no", http.StatusBadRequest)
		}
	}))
	defer hook.Close()
	var logged bytes.Buffer
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey,
		Log: slog.New(slog.NewJSONHandler(&logged, nil)), Batch: 2}
	for i, text := range []string{"ok 1", "refuse", "ok 2", "ok 3"} {
		enqueue(t, db, sms.SMS{ID: "f" + string(rune('0'+i)), To: "+15551230020", Text: text, Purpose: sms.PurposeTest}, nil)
	}
	later, _ := sms.NewPending(sms.SMS{ID: "later", To: "+15551230021", Text: "later", Purpose: sms.PurposeTest}, time.Now().Add(time.Hour), nil)
	if err := db.EnqueueSMS(t.Context(), later); err != nil {
		t.Fatal(err)
	}
	err := s.Flush(t.Context())
	if err == nil || !strings.Contains(err.Error(), "1 of 4 not accepted") || !strings.Contains(err.Error(), "400") {
		t.Fatalf("Flush = %v", err)
	}
	due, _ := db.DueSMS(t.Context(), time.Now().Add(2*time.Hour), 10)
	if len(due) != 2 || due[0].ID != "f1" || due[0].Attempts != 1 || !strings.Contains(due[0].LastError, "400") || due[1].ID != "later" {
		t.Fatalf("left in the outbox: %+v", due)
	}
	if !strings.Contains(logged.String(), `"id":"f1"`) || strings.Contains(logged.String(), "refuse") {
		t.Errorf("log of the failure (must name the id, not the text): %s", logged.String())
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Errorf("second Flush with nothing due: %v", err)
	}
}

// voiceGateway records calls.
type voiceGateway struct {
	mu    sync.Mutex
	calls []sms.SMS
}

func (g *voiceGateway) Send(context.Context, sms.SMS) error { return errors.New("no SMS here") }

func (g *voiceGateway) Call(_ context.Context, m sms.SMS) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, m)
	return nil
}

// A call goes through the VoiceGateway; with a gateway that makes no
// calls it is dropped, counted as a failure, and does not come back.
func TestSenderVoice(t *testing.T) {
	db := openStore(t, t.TempDir())
	call := func(id string) sms.Pending {
		p, _ := sms.NewPending(sms.SMS{ID: id, To: "+15551230030", Text: "Your code", Purpose: sms.PurposePassword}, time.Now(), testKey)
		p.Voice = true
		if err := db.EnqueueSMS(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vg := &voiceGateway{}
	call("v1")
	if err := (&sms.Sender{Outbox: db, Gateway: vg, Key: testKey, Log: quietLog()}).Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(vg.calls) != 1 || vg.calls[0].ID != "v1" || vg.calls[0].Text != "Your code" {
		t.Fatalf("calls: %+v", vg.calls)
	}

	call("v2")
	hook := newWebhook(t, 0)
	metrics := sms.NewMetrics(nil)
	err := (&sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey, Log: quietLog(), Metrics: metrics}).Flush(t.Context())
	if err == nil {
		t.Error("Flush of a call without a voice gateway: no error")
	}
	if n, _ := db.CountSMS(t.Context()); n != 0 || len(hook.got()) != 0 {
		t.Errorf("call without a voice gateway: %d left, %d SMS sent", n, len(hook.got()))
	}
	if v := value(metrics.Failures.WithLabelValues("password")); v != 1 {
		t.Errorf("failures = %v", v)
	}
}

// A body sealed with another key is kept and retried (the operator may
// put the right key back), never sent garbled.
func TestSenderWrongKey(t *testing.T) {
	db := openStore(t, t.TempDir())
	enqueue(t, db, sms.SMS{ID: "k1", To: "+15551230040", Text: "secret", Purpose: sms.PurposePassword}, testKey)
	hook := newWebhook(t, 0)
	other := bytes.Repeat([]byte{1}, sms.KeySize)
	if err := (&sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: other, Log: quietLog()}).Flush(t.Context()); err == nil {
		t.Error("Flush with the wrong key: no error")
	}
	due, _ := db.DueSMS(t.Context(), time.Now().Add(time.Hour), 10)
	if len(due) != 1 || due[0].Attempts != 1 || len(hook.got()) != 0 {
		t.Fatalf("after the wrong key: %+v, %d sent", due, len(hook.got()))
	}
}

// The worker prunes the SMS log of what is older than 48 hours.
func TestSenderPrunesLog(t *testing.T) {
	db := openStore(t, t.TempDir())
	now := time.Now()
	for i, age := range []time.Duration{72 * time.Hour, 49 * time.Hour, 47 * time.Hour, time.Hour} {
		p, _ := sms.NewPending(sms.SMS{ID: "l" + string(rune('0'+i)), To: "+15551230050", Text: "x", Purpose: sms.PurposePassword}, now.Add(-age), nil)
		if err := db.EnqueueSMS(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	hook := newWebhook(t, 0)
	s := &sms.Sender{Outbox: db, Gateway: &sms.WebhookGateway{URL: hook.URL}, Log: quietLog(), Now: func() time.Time { return now }}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	times, err := db.QueuedTimes(t.Context(), "+15551230050", sms.PurposePassword, time.Time{})
	if err != nil || len(times) != 2 {
		t.Fatalf("log after pruning: %v, %v; want the 2 younger than 48 h", times, err)
	}
}

// A node that starts again sends at once what it had claimed and not sent
// (it died in between); another node leaves those claims to their lease.
func TestSenderReleasesItsClaims(t *testing.T) {
	db := openStore(t, t.TempDir())
	enqueue(t, db, sms.SMS{ID: "claimed", To: "+15551230005", Text: "claimed by n1", Purpose: sms.PurposeTest}, nil)
	now := time.Now()
	got, err := db.ClaimDueSMS(t.Context(), "n1", now.Add(time.Second), now.Add(time.Hour), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	hook := newWebhook(t, 0)
	other := &sms.Sender{Outbox: db, Node: "n2", Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey, Log: quietLog()}
	stop := start(t, other)
	enqueue(t, db, sms.SMS{ID: "later", To: "+15551230006", Text: "queued later", Purpose: sms.PurposeTest}, nil)
	other.Wake()
	hook.wait(t, 1)
	// Sent and deleted: only the claimed one is left.
	waitFor(t, func() bool { n, err := db.CountSMS(t.Context()); return err == nil && n == 1 })
	stop()
	if h := hook.got(); len(h) != 1 || h[0].sms["id"] != "later" {
		t.Fatalf("n2 sent %v, want only the unclaimed one", h)
	}
	restarted := &sms.Sender{Outbox: db, Node: "n1", Gateway: &sms.WebhookGateway{URL: hook.URL}, Key: testKey, Log: quietLog()}
	start(t, restarted)
	hook.wait(t, 1) // one more
	if h := hook.got(); len(h) != 2 || h[1].sms["id"] != "claimed" {
		t.Fatalf("after n1 started again the receiver got %v", h)
	}
}
