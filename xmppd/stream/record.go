package stream

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tlsRecordHeader is the length of a TLS record's header (RFC 8446 §5.1).
const tlsRecordHeader = 5

// recordConn sits between a TLS connection and its socket. It hands
// crypto/tls at most the rest of the current record, so that TLS never
// holds a whole further record that the socket no longer shows (waiting on
// the socket would then miss input), and its own buffer comes from a pool
// and goes back as soon as it is empty, so that an idle stream holds none.
type recordConn struct {
	net.Conn
	rc   syscall.RawConn // nil: the connection has no socket to wait on
	buf  *[]byte         // from recordBufs; nil when data is empty
	data []byte          // read from the socket, not yet handed to TLS
	err  error           // the socket's error, once data is handed out

	hdr  [tlsRecordHeader]byte
	nhdr int // bytes of the current record's header seen
	left int // bytes of the current record's body still to hand out
}

// recordBufs are the socket read buffers of recordConns: one TLS record
// and its header fit.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10+256+tlsRecordHeader); return &b }}

func newRecordConn(nc net.Conn) *recordConn {
	c := &recordConn{Conn: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	return c
}

// Read implements net.Conn for crypto/tls: at most up to the end of the
// current record's header or body.
func (c *recordConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		if c.buf == nil {
			c.buf = recordBufs.Get().(*[]byte)
		}
		n, err := c.Conn.Read(*c.buf)
		if n == 0 {
			c.release()
			return 0, err
		}
		c.data, c.err = (*c.buf)[:n], err
	}
	lim := c.left
	if lim == 0 {
		lim = tlsRecordHeader - c.nhdr
	}
	n := copy(p[:min(len(p), lim)], c.data)
	if c.left == 0 {
		copy(c.hdr[c.nhdr:], p[:n])
		if c.nhdr += n; c.nhdr == tlsRecordHeader {
			c.nhdr, c.left = 0, int(c.hdr[3])<<8|int(c.hdr[4])
		}
	} else {
		c.left -= n
	}
	if c.data = c.data[n:]; len(c.data) == 0 {
		c.release()
	}
	return n, nil
}

func (c *recordConn) release() {
	if c.buf != nil {
		recordBufs.Put(c.buf)
		c.buf, c.data = nil, nil
	}
}

// waitReadable waits until the socket has input, end of file or an
// error, within the read deadline, without reading: the stack under it is
// shallow.
func (c *recordConn) waitReadable() error {
	if c.rc == nil || len(c.data) > 0 || c.err != nil {
		return nil
	}
	err := c.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Anything but "nothing yet" is for the read that follows.
		return !errors.Is(err, syscall.EAGAIN)
	})
	return err
}

// tlsSource is what a stream's wire.Reader reads after TLS: the TLS
// connection, which says (as a wire.Waiter) when nothing is held above the
// socket, so that an idle stream waits on the socket alone.
type tlsSource struct {
	tc  *tls.Conn
	rec *recordConn
	// more: the last Read filled its buffer, so TLS may hold more of
	// the record it decrypted.
	more bool
	// parked is the last parked wait (Park), for Wake.
	parked atomic.Pointer[parkedWait]
}

func (s *tlsSource) Read(p []byte) (int, error) {
	n, err := s.tc.Read(p)
	s.more = n == len(p) && n > 0
	return n, err
}

func (s *tlsSource) SetReadDeadline(t time.Time) error { return s.tc.SetReadDeadline(t) }

// Pending implements wire.Waiter: TLS may hold decrypted input, or
// the record reader bytes of the socket. (A record that came in part
// is not pending: its rest is for the socket to bring.)
func (s *tlsSource) Pending() bool { return s.more || len(s.rec.data) > 0 || s.rec.err != nil }

// WaitReadable implements wire.Waiter.
func (s *tlsSource) WaitReadable() error { return s.rec.waitReadable() }
