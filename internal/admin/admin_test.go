package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type kick struct{ number, condition string }

type fakeHandler struct {
	mu     sync.Mutex
	kicks  []kick
	closed int
	err    error
	block  chan struct{} // when set, Kick waits for it or ctx
	wakes  int
}

func (h *fakeHandler) Wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wakes++
}

func (h *fakeHandler) Kick(ctx context.Context, number, condition string) (int, error) {
	if h.block != nil {
		select {
		case <-h.block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kicks = append(h.kicks, kick{number, condition})
	return h.closed, h.err
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// socketPath is short: t.TempDir() can exceed the Unix socket path limit.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

// start runs Serve in the background and waits until it answers.
func start(t *testing.T, path string, h Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, h, quietLog()) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Serve: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				err = errors.New("Serve did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestKick(t *testing.T) {
	path := socketPath(t)
	h := &fakeHandler{closed: 2}
	stop := start(t, path, h)

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
	}

	n, err := Kick(context.Background(), path, "+821012345678", "not-authorized")
	if err != nil || n != 2 {
		t.Fatalf("Kick = %d, %v; want 2, nil", n, err)
	}
	if len(h.kicks) != 1 || h.kicks[0] != (kick{"+821012345678", "not-authorized"}) {
		t.Errorf("handler got %v", h.kicks)
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v after cancel, want nil", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	if _, err := Kick(context.Background(), path, "+821012345678", "not-authorized"); !errors.Is(err, ErrNoServer) {
		t.Errorf("after stop: %v, want ErrNoServer", err)
	}
}

func TestHandlerError(t *testing.T) {
	path := socketPath(t)
	start(t, path, &fakeHandler{err: errors.New("router is gone")})
	_, err := Kick(context.Background(), path, "+15551234567", "not-authorized")
	if err == nil || !strings.Contains(err.Error(), "router is gone") || errors.Is(err, ErrNoServer) {
		t.Errorf("err = %v", err)
	}
}

func TestNoServer(t *testing.T) {
	path := socketPath(t)
	if _, err := Kick(context.Background(), path, "+15551234567", "not-authorized"); !errors.Is(err, ErrNoServer) {
		t.Errorf("missing socket: %v, want ErrNoServer", err)
	}

	// A socket file whose server died.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not there: %v", err)
	}
	if _, err := Kick(context.Background(), path, "+15551234567", "not-authorized"); !errors.Is(err, ErrNoServer) {
		t.Errorf("stale socket: %v, want ErrNoServer", err)
	}

	// Serve replaces the stale socket.
	start(t, path, &fakeHandler{closed: 1})
	if n, err := Kick(context.Background(), path, "+15551234567", "not-authorized"); err != nil || n != 1 {
		t.Errorf("after replacing the stale socket: %d, %v", n, err)
	}
}

func TestRefusesSecondServer(t *testing.T) {
	path := socketPath(t)
	first := &fakeHandler{closed: 1}
	start(t, path, first)
	err := Serve(context.Background(), path, &fakeHandler{closed: 9}, quietLog())
	if err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("second Serve: %v", err)
	}
	if n, err := Kick(context.Background(), path, "+15551234567", "not-authorized"); err != nil || n != 1 {
		t.Errorf("first server after the second was refused: %d, %v", n, err)
	}
}

func TestRefusesNonSocket(t *testing.T) {
	path := socketPath(t)
	os.WriteFile(path, []byte("precious"), 0o644)
	if err := Serve(context.Background(), path, &fakeHandler{}, quietLog()); err == nil {
		t.Fatal("Serve over a regular file: no error")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file was touched")
	}
}

func TestProtocolErrors(t *testing.T) {
	path := socketPath(t)
	h := &fakeHandler{closed: 3}
	start(t, path, h)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, tt := range []struct{ req, want string }{
		{`not json`, `{"closed":0,"error":"malformed request: `},
		{`{"op":"reboot"}`, `{"closed":0,"error":"unknown op \"reboot\""}`},
		{`{"op":"kick","number":"+15551234567"}`, `{"closed":0,"error":"kick needs a number and a condition"}`},
		// The connection survives errors: a good request still works.
		{`{"op":"kick","number":"+15551234567","condition":"conflict"}`, `{"closed":3}`},
	} {
		if _, err := io.WriteString(c, tt.req+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", tt.req, err)
		}
		if !strings.HasPrefix(line, tt.want) {
			t.Errorf("%s → %q, want prefix %q", tt.req, line, tt.want)
		}
	}
	if len(h.kicks) != 1 {
		t.Errorf("handler called %d times, want 1", len(h.kicks))
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	old := idleTimeout
	idleTimeout = 200 * time.Millisecond
	t.Cleanup(func() { idleTimeout = old })

	path := socketPath(t)
	start(t, path, &fakeHandler{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, `{"op":"kick"`) // half a request, then silence
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	t0 := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v, want EOF from the server closing", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestClientDeadline(t *testing.T) {
	path := socketPath(t)
	h := &fakeHandler{block: make(chan struct{})}
	defer close(h.block)
	start(t, path, h)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := Kick(ctx, path, "+15551234567", "not-authorized")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("returned after %v", d)
	}
}

func TestStopClosesOpenConnections(t *testing.T) {
	path := socketPath(t)
	stop := start(t, path, &fakeHandler{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A request answered: the server has taken the connection.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, `{"op":"wake"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || strings.Contains(line, "error") {
		t.Fatalf("answer to wake: %q, %v", line, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after stop: %v, want EOF", err)
	}
}

func TestOverlongRequestClosesConnection(t *testing.T) {
	path := socketPath(t)
	h := &fakeHandler{}
	start(t, path, h)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, `{"op":"kick","number":"`+strings.Repeat("1", maxLine+10)+`","condition":"x"}`+"\n")
	// EOF or a reset (the server closed with our bytes unread); not a timeout.
	if b, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) || len(b) > 0 {
		t.Fatalf("read %q, %v; want the connection closed without an answer", b, err)
	}
	if len(h.kicks) != 0 {
		t.Errorf("overlong request reached the handler")
	}
}

func TestWake(t *testing.T) {
	path := socketPath(t)
	h := &fakeHandler{}
	start(t, path, h)
	for range 2 {
		if err := Wake(context.Background(), path); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wakes != 2 || len(h.kicks) != 0 {
		t.Errorf("handler woken %d times, kicks %v; want 2 and none", h.wakes, h.kicks)
	}
}

func TestWakeNoServer(t *testing.T) {
	if err := Wake(context.Background(), socketPath(t)); !errors.Is(err, ErrNoServer) {
		t.Errorf("err = %v, want ErrNoServer", err)
	}
}

// forgetter is a handler that also forgets accounts.
type forgetter struct {
	fakeHandler
	forgot []string
}

func (f *forgetter) Forget(ctx context.Context, number string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, number)
	return nil
}

func TestForget(t *testing.T) {
	path := socketPath(t)
	f := &forgetter{}
	start(t, path, f)
	if err := Forget(context.Background(), path, "+15551234567"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := append([]string(nil), f.forgot...)
	f.mu.Unlock()
	if len(got) != 1 || got[0] != "+15551234567" {
		t.Errorf("forgot %v", got)
	}
	// A server whose handler does not forget says so.
	other := socketPath(t)
	start(t, other, &fakeHandler{})
	if err := Forget(context.Background(), other, "+15551234567"); err == nil || errors.Is(err, ErrNoServer) {
		t.Errorf("forget on a handler without Forget: %v", err)
	}
}
