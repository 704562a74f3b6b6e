package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHealthz(t *testing.T) {
	var health error
	var log lockedBuffer
	srv := httptest.NewServer(New(Options{
		Health:   func(ctx context.Context) error { return health },
		Gatherer: prometheus.NewRegistry(),
		Log:      slog.New(slog.NewTextHandler(&log, nil)),
	}))
	defer srv.Close()

	code, _, body := get(t, srv, "/healthz")
	if code != 200 || body != "ok" {
		t.Errorf("healthy: %d %q", code, body)
	}
	// Why the store is down is for the log only: an error can name
	// hosts, users and SQL.
	health = errors.New("dial tcp db.internal:5432: password authentication failed for user dialtone")
	code, _, body = get(t, srv, "/healthz")
	if code != 503 || body != "unavailable" {
		t.Errorf("unhealthy: %d %q, want 503 \"unavailable\"", code, body)
	}
	if !strings.Contains(log.String(), "password authentication failed") {
		t.Errorf("the reason is not in the log: %q", log.String())
	}

	resp, err := srv.Client().Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", resp.StatusCode)
	}
}

func TestHealthzNilCheck(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	if code, _, body := get(t, srv, "/healthz"); code != 200 || body != "ok" {
		t.Errorf("%d %q", code, body)
	}
}

func TestHealthzGivesCheckADeadline(t *testing.T) {
	srv := httptest.NewServer(New(Options{Health: func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline")
		}
		return nil
	}}))
	defer srv.Close()
	if code, _, body := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("%d %q", code, body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "dialtone_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(New(Options{Gatherer: reg, MetricsAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}))
	defer srv.Close()

	code, h, body := get(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("%d %q", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(body, "# TYPE dialtone_test_total counter\ndialtone_test_total 3\n") {
		t.Errorf("body %q", body)
	}
}

func TestUnknownPath(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	if code, _, _ := get(t, srv, "/nope"); code != 404 {
		t.Errorf("%d", code)
	}
}

// lockedBuffer is a log sink that handlers on other goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
