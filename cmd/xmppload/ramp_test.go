package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestParseSources(t *testing.T) {
	got, err := parseSources("127.0.0.2-127.0.0.4, 127.1.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, ip := range got {
		s = append(s, ip.String())
	}
	if want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.1.0.1"}; !slices.Equal(s, want) {
		t.Errorf("got %v, want %v", s, want)
	}
	// A range across an octet boundary counts on.
	if got, err := parseSources("127.0.0.255-127.0.1.0"); err != nil || len(got) != 2 || got[1].String() != "127.0.1.0" {
		t.Errorf("across an octet: %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "192.0.2.1", "::1", "127.0.0.1-10.0.0.1", "127.0.0.5-127.0.0.4", "127.0.0.0-127.0.1.0", "x"} {
		if _, err := parseSources(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// TestDialFromSources connects to a real listener from two source
// addresses in turn: the server sees each connection come from the next.
func TestDialFromSources(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src, err := parseSources("127.0.0.2-127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	d := &dialer{src: src, nextSrc: new(atomic.Uint64)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var from []string
	for range 4 {
		c, err := d.dial(ctx, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		from = append(from, sc.RemoteAddr().(*net.TCPAddr).IP.String())
		sc.Close()
	}
	if want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"}; !slices.Equal(from, want) {
		t.Errorf("connections came from %v, want %v", from, want)
	}
}

// TestFileLimit raises the soft limit to the hard one and refuses a
// client count past what it may get, naming the fix.
func TestFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	low := syscall.Rlimit{Cur: min(rl.Cur, 512), Max: rl.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if err := checkFileLimit(int(min(rl.Max, 1<<20)) - 256); err != nil {
		t.Fatalf("within the hard limit: %v", err)
	}
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur < min(rl.Max, 1<<20) {
		t.Errorf("soft limit %d, want at least %d", now.Cur, min(rl.Max, 1<<20))
	}
	// Past fs.nr_open nobody may go, root or not.
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		t.Skip(err)
	}
	var nrOpen int
	for _, ch := range strings.TrimSpace(string(b)) {
		nrOpen = nrOpen*10 + int(ch-'0')
	}
	if err := checkFileLimit(nrOpen + 1); err == nil || !strings.Contains(err.Error(), "ulimit -Hn") {
		t.Errorf("past nr_open: %v", err)
	}
}

// TestRampRows samples a counter and this process: one row per
// interval, sessions as counted, RSS and KiB per session filled in.
func TestRampRows(t *testing.T) {
	var up atomic.Int64
	seen := make(chan rampRow)
	rp := &ramp{up: &up, m: &serverMeter{pid: os.Getpid()}, interval: 100 * time.Millisecond, log: io.Discard, seen: seen}
	stop, done := make(chan struct{}), make(chan struct{})
	go rp.run(stop, done)
	timeout := time.After(10 * time.Second)
	for n := int64(100); n <= 300; {
		select {
		case row := <-seen:
			if row.Sessions == n {
				n += 100
			}
			up.Store(n)
		case <-timeout:
			t.Fatalf("no row with %d sessions within 10 s", n)
		}
	}
	close(stop)
	<-done
	last := rp.rows[len(rp.rows)-1]
	if last.Sessions != 300 || last.RSSKiB == 0 || last.KiBEach <= 0 || last.LoginsPS <= 0 {
		t.Errorf("last row %+v", last)
	}
	for i := 1; i < len(rp.rows); i++ {
		if rp.rows[i].Sessions < rp.rows[i-1].Sessions || rp.rows[i].Second <= rp.rows[i-1].Second {
			t.Errorf("rows not in order: %+v then %+v", rp.rows[i-1], rp.rows[i])
		}
	}
}

// TestIdleAnswersPings: an idle session answers the server's pings (a
// ramp to 100,000 outlasts the server's idle time) and ignores the rest.
func TestIdleAnswersPings(t *testing.T) {
	cl, srv := net.Pipe()
	defer srv.Close()
	s := &session{conn: cl, r: bufio.NewReaderSize(cl, 4<<10), w: bufio.NewWriterSize(cl, 4<<10)}
	done := make(chan struct{})
	go func() { answerPings(s); close(done) }()
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(srv, `<message from='a@localhost'><body>x</body></message><iq type='get' id='p&apos;1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	buf := make([]byte, 256)
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(buf[:n]), `<iq type='result' id='p&#39;1' to='localhost'/>`; got != want {
		t.Errorf("answer %q, want %q", got, want)
	}
	io.WriteString(srv, `</stream:stream>`)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not end with the stream")
	}
}
