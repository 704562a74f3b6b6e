package xmppd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/archive"
	"dialtone/auth"
	"dialtone/internal/tlscert"
	"dialtone/storage"
	"dialtone/xmppd/mod/mam"
	"dialtone/xmppd/router"
)

// benchAccounts is the least auth.Accounts a benchmark needs.
type benchAccounts struct {
	mu sync.Mutex
	m  map[auth.Number]auth.Account
}

func (a *benchAccounts) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return acc, auth.ErrNotFound
	}
	return acc, nil
}
func (a *benchAccounts) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[n] = auth.Account{Number: n, State: auth.StateActive, Credentials: c, Generation: 1}
	return true, nil
}
func (a *benchAccounts) RecordLogin(context.Context, auth.Number, time.Time) error { return nil }
func (a *benchAccounts) DeleteAccount(context.Context, auth.Number) error          { return nil }
func (a *benchAccounts) ListAccounts(context.Context, auth.State) ([]auth.Account, error) {
	return nil, nil
}

type benchServer struct {
	srv  *Server
	addr string
	pass string
}

func newBenchServer(b testing.TB, mods []router.Module, numbers ...string) *benchServer {
	cert, err := tlscert.New("localhost", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	parser, _ := auth.NewNumberParser("KR", nil)
	accounts := &benchAccounts{m: map[auth.Number]auth.Account{}}
	pass := "benchmark-password"
	creds, _ := auth.NewCredentials(pass)
	for _, n := range numbers {
		accounts.SetCredentials(context.Background(), auth.Number(n), creds)
	}
	srv, err := NewServer(Config{
		Domain: "localhost", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		SASL: &auth.SASL{Parser: parser, Store: accounts}, Parser: parser, Accounts: accounts,
		MaxPending: 100000, MaxPendingPerIP: 100000,
		// The sender writes without waiting for the receiver, whose queue
		// must take the backlog (in stanzas and in bytes).
		QueueSize: 1 << 14, QueueBytes: 1 << 24,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Load(append([]router.Module{benchPresence{}}, mods...)...); err != nil {
		b.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.ServeDirectTLS(l)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &benchServer{srv: srv, addr: l.Addr().String(), pass: pass}
}

// benchPresence records what a session broadcasts, so that it counts as
// available.
type benchPresence struct{}

func (benchPresence) Register(h *router.Hooks) error {
	r := h.Router()
	h.Hook(router.PresenceOut, router.Presences, 0, func(ctx context.Context, ev *router.Event) error {
		r.SetPresence(ctx, ev.Origin, ev.Stanza)
		return nil
	})
	return nil
}

// benchPing answers pings with an empty result.
var benchPing = router.ModuleFunc(func(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer|router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: "urn:xmpp:ping", Local: "ping"},
		func(context.Context, *router.Stanza) ([]byte, error) { return nil, nil })
	return nil
})

// benchConn is a logged-in raw TLS connection.
type benchConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// readUntil reads until the accumulated input contains want.
func (c *benchConn) readUntil(want string) error {
	var acc []byte
	buf := make([]byte, 4096)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !bytes.Contains(acc, []byte(want)) {
		n, err := c.r.Read(buf)
		if err != nil {
			return fmt.Errorf("waiting for %q: %w (have %q)", want, err, acc)
		}
		acc = append(acc, buf[:n]...)
	}
	return nil
}

func benchLogin(b testing.TB, bs *benchServer, number, res string) *benchConn {
	nc, err := net.Dial("tcp", bs.addr)
	if err != nil {
		b.Fatal(err)
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	c := &benchConn{conn: tc, r: bufio.NewReader(tc)}
	b.Cleanup(func() { tc.Close() })
	header := `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
	io.WriteString(tc, header)
	if err := c.readUntil("</stream:features>"); err != nil {
		b.Fatal(err)
	}
	neg := sasl.NewClient(sasl.ScramSha256, sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(number), []byte(bs.pass), nil }))
	_, first, _ := neg.Step(nil)
	io.WriteString(tc, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>`+base64.StdEncoding.EncodeToString(first)+`</auth>`)
	line, err := c.r.ReadString('>')
	if err != nil {
		b.Fatal(err)
	}
	rest, err := c.r.ReadString('<')
	if err != nil || !strings.Contains(line, "challenge") {
		b.Fatalf("challenge: %q %v", line, err)
	}
	chal, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(rest, "<"))
	c.r.ReadString('>')
	_, final, err := neg.Step(chal)
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(tc, `<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`+base64.StdEncoding.EncodeToString(final)+`</response>`)
	if err := c.readUntil("</success>"); err != nil {
		b.Fatal(err)
	}
	io.WriteString(tc, header)
	if err := c.readUntil("</stream:features>"); err != nil {
		b.Fatal(err)
	}
	io.WriteString(tc, `<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>`+res+`</resource></bind></iq><presence/><iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if err := c.readUntil("id=\"sync\""); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkRouteMessage measures one message routed from one client
// session to another over real TLS sockets on loopback: the server reads
// and checks it, stamps 'from', and writes it to the other stream. The
// client side only counts end tags, so the server dominates.
func BenchmarkRouteMessage(b *testing.B) { benchRoute(b, benchPing) }

// BenchmarkRouteMessageArchived is BenchmarkRouteMessage with the message
// archive (XEP-0313) on an embedded SQLite store: every message is
// archived for both accounts, written behind in batches (the goal: at
// least 80% of the throughput without).
func BenchmarkRouteMessageArchived(b *testing.B) {
	db, err := storage.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	benchRoute(b, benchPing, mam.New(mam.Config{Store: db}))
}

// BenchmarkRouteMessageArchiveHooks is BenchmarkRouteMessageArchived with
// a store that discards the batches: what archiving costs the routing path
// itself (stanza-ids, the queue, the writer's loop), without the database.
func BenchmarkRouteMessageArchiveHooks(b *testing.B) {
	benchRoute(b, benchPing, mam.New(mam.Config{Store: discardArchive{}}))
}

// discardArchive is an archive.Store that keeps nothing.
type discardArchive struct{}

func (discardArchive) AppendArchive(context.Context, []archive.Message) error { return nil }
func (discardArchive) QueryArchive(context.Context, archive.Query) ([]archive.Message, bool, error) {
	return nil, false, nil
}
func (discardArchive) LastArchiveID(context.Context) (int64, error) { return 0, nil }
func (discardArchive) DeleteArchiveBefore(context.Context, int64, int) (int64, error) {
	return 0, nil
}
func (discardArchive) ArchivePrefs(context.Context, string) (archive.Prefs, error) {
	return archive.Prefs{Default: archive.Always}, nil
}
func (discardArchive) SetArchivePrefs(context.Context, string, archive.Prefs) error { return nil }

// benchRoute measures messages from one client to another through a
// server with mods.
func benchRoute(b *testing.B, mods ...router.Module) {
	bs := newBenchServer(b, mods, "+821011112222", "+821033334444")
	a := benchLogin(b, bs, "+821011112222", "a")
	r := benchLogin(b, bs, "+821033334444", "b")
	msg := []byte(`<message type='chat' to='+821033334444@localhost/b'><body>Hello, this is a message of about a hundred bytes on the wire.</body></message>`)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		// count </message> end tags
		buf := make([]byte, 64<<10)
		end := []byte("</message>")
		got, carry := 0, 0
		r.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
		for got < b.N {
			n, err := r.r.Read(buf[carry:])
			if err != nil {
				done <- err
				return
			}
			data := buf[:carry+n]
			got += bytes.Count(data, end)
			keep := min(len(end)-1, len(data))
			copy(buf, data[len(data)-keep:])
			carry = keep
		}
		done <- nil
	}()
	b.ResetTimer()
	cpu0 := processCPU()
	batch := bytes.Repeat(msg, 64)
	for sent := 0; sent < b.N; {
		k := min(64, b.N-sent)
		if _, err := a.conn.Write(batch[:k*len(msg)]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	// CPU per message of the whole process (server and clients): on a
	// machine shared with other work, a steadier figure than msgs/s.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1000/float64(b.N), "cpu-us/msg")
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleSession reports the heap held by one idle, logged-in TLS
// session (both of the server's goroutines included, client side excluded
// as far as possible by measuring the client's share on its own).
func BenchmarkIdleSession(b *testing.B) {
	const n = 200
	bs := newBenchServer(b, []router.Module{benchPing}, "+821055556666")
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]*benchConn, n)
		for j := range conns {
			conns[j] = benchLogin(b, bs, "+821055556666", fmt.Sprintf("r%d-%d", i, j))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
		b.ReportMetric(total/n/1024, "KiB/session(with-client)")
		for _, c := range conns {
			c.conn.Close()
		}
	}
}
