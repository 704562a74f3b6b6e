package stream

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/internal/tlscert"
)

// holdConn is a client's socket that can hold back its writes and send
// them in one: two TLS records in one TCP segment.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold {
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *holdConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	_, err := c.Conn.Write(c.buf.Bytes())
	return err
}

// testCert is a self-signed certificate for localhost.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	cert, err := tlscert.New("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestTLSWaitSeesRecordsReadTogether: elements in TLS records that arrive
// in one segment are all read, although the stream waits for input on the
// socket between elements (crypto/tls must not hold a whole record the
// socket no longer shows), TLS's own read buffers can be trimmed between
// elements (trimTLS finds crypto/tls still has them where trimTLS looks),
// and a stream that read everything holds no read buffer of its socket.
func TestTLSWaitSeesRecordsReadTogether(t *testing.T) {
	cert := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type result struct {
		names   []string
		held    bool
		trimmed bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		nc, err := ln.Accept()
		if err != nil {
			res.err = err
			return
		}
		defer nc.Close()
		tr := NewTCP(nc, 1<<16)
		deadline := time.Now().Add(10 * time.Second)
		if _, res.err = tr.Handshake(&tls.Config{Certificates: []tls.Certificate{cert}}, false, deadline); res.err != nil {
			return
		}
		r := tr.Reader()
		r.SetDeadline(deadline)
		if _, res.err = r.ReadHeader(); res.err != nil {
			return
		}
		for i := range 4 {
			if i == 3 {
				// The TLS read buffers can go: the rest is in recordConn.
				res.trimmed = trimTLS(tr.conn().(*tls.Conn))
			}
			if res.err = r.WaitInput(); res.err != nil {
				return
			}
			el, err := r.ReadElement()
			if res.err = err; err != nil {
				return
			}
			res.names = append(res.names, el.Name.Local)
		}
		src := tr.r.Buffered() // nothing left above the socket
		rec := tr.conn().(*tls.Conn).NetConn().(*recordConn)
		res.held = src > 0 || rec.buf != nil || len(rec.data) > 0
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hc := &holdConn{Conn: raw}
	tc := tls.Client(hc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write([]byte(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`)); err != nil {
		t.Fatal(err)
	}
	hc.mu.Lock()
	hc.hold = true
	hc.mu.Unlock()
	for _, el := range []string{`<a/>`, `<b/>`, `<c/>`, `<d/>`} {
		if _, err := tc.Write([]byte(el)); err != nil { // one record each
			t.Fatal(err)
		}
	}
	if err := hc.flush(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("server read %v, then: %v", res.names, res.err)
	}
	if got := strings.Join(res.names, ""); got != "abcd" {
		t.Fatalf("read %v, want a b c d", res.names)
	}
	if !res.trimmed {
		t.Fatal("trimTLS did not trim: crypto/tls's buffers are not as it expects")
	}
	if res.held {
		t.Fatal("the stream still holds a read buffer with nothing to read")
	}
}

// trimTLS leaves a connection alone while crypto/tls holds input not yet
// read (fails safe): what was decrypted and not read is read after it.
func TestTrimTLSKeepsUnreadInput(t *testing.T) {
	cert := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.Write([]byte("hello world")) // one record
		io.Copy(io.Discard, tc)         // until the server closes
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{cert}})
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tc, buf); err != nil {
		t.Fatal(err)
	}
	if trimTLS(tc) {
		t.Fatal("trimmed a connection holding unread input")
	}
	rest := make([]byte, 6)
	if _, err := io.ReadFull(tc, rest); err != nil || string(buf)+string(rest) != "hello world" {
		t.Fatalf("read %q %q, %v", buf, rest, err)
	}
	if !trimTLS(tc) {
		t.Fatal("not trimmed once everything was read")
	}
}
