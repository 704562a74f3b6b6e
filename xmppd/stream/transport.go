package stream

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"dialtone/xmppd/wire"
)

// Transport carries one stream: a TCP connection (with TLS), or a
// WebSocket (package websocket), whose frames are elements. The stream
// engine (Conn) writes whole elements to it, never bytes it must cut up.
type Transport interface {
	// Reader reads the peer's side of the stream.
	Reader() *wire.Reader
	// WriteHeader writes our stream header.
	WriteHeader(h Header) error
	// WriteElements writes elements, each one complete top-level element.
	WriteElements(elems [][]byte) error
	// WriteEnd writes the stream error cond (none when "") and the end
	// of the stream.
	WriteEnd(cond, text string) error
	// SetWriteDeadline bounds the writes from now on.
	SetWriteDeadline(t time.Time) error
	// Interrupt makes the reads and writes under way fail at once (a
	// shutdown during negotiation).
	Interrupt()
	// CloseWrite ends our side after the end of the stream where the
	// transport can (a TLS close_notify).
	CloseWrite()
	// Close closes the transport.
	Close() error
}

// TCP is the transport of c2s and s2s connections: XML bytes over TCP,
// with TLS from the start (direct TLS, XEP-0368) or after STARTTLS.
type TCP struct {
	raw net.Conn // the TCP connection
	r   *wire.Reader

	mu sync.Mutex
	nc net.Conn // raw, or the TLS connection over it (under mu)
}

// NewTCP returns the transport of nc, whose top-level elements may be
// max bytes long.
func NewTCP(nc net.Conn, max int) *TCP {
	return &TCP{raw: nc, nc: nc, r: wire.NewReader(nc, max)}
}

// Raw is the TCP connection under any TLS.
func (t *TCP) Raw() net.Conn { return t.raw }

// Reader implements Transport.
func (t *TCP) Reader() *wire.Reader { return t.r }

func (t *TCP) conn() net.Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nc
}

// TLS is the TLS connection, or nil before TLS.
func (t *TCP) TLS() *tls.Conn {
	tc, _ := t.conn().(*tls.Conn)
	return tc
}

// Handshake secures the connection: as a server with cfg, or as a client;
// the reads and writes from then on go through TLS. Nothing may be
// buffered from before TLS (a peer that sent data after <starttls/>, or
// before, gets policy-violation: those bytes would be trusted by nobody).
// deadline bounds the handshake.
func (t *TCP) Handshake(cfg *tls.Config, client bool, deadline time.Time) (*tls.Conn, error) {
	if t.r.Buffered() > 0 {
		return nil, NewError("policy-violation", "data after starttls")
	}
	var tc *tls.Conn
	rec := newRecordConn(t.raw)
	if client {
		tc = tls.Client(rec, cfg)
	} else {
		tc = tls.Server(rec, cfg)
	}
	t.raw.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.nc = tc
	t.mu.Unlock()
	t.r.Reset(&tlsSource{tc: tc, rec: rec})
	return tc, nil
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// write writes the parts in one call to the connection.
func (t *TCP) write(parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return nil
	}
	nc := t.conn()
	if len(parts) == 1 {
		_, err := nc.Write(parts[0])
		return err
	}
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, p := range parts {
		buf = append(buf, p...)
	}
	_, err := nc.Write(buf)
	if cap(buf) <= 256<<10 {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	return err
}

// WriteHeader implements Transport.
func (t *TCP) WriteHeader(h Header) error { return t.write(h.Append(nil)) }

// WriteElements implements Transport: one write of them all.
func (t *TCP) WriteElements(elems [][]byte) error { return t.write(elems...) }

// WriteEnd implements Transport.
func (t *TCP) WriteEnd(cond, text string) error {
	var b []byte
	if cond != "" {
		b = AppendError(b, cond, text)
	}
	return t.write(wire.NewBuilder(b).EndOf("stream:stream").Bytes())
}

// SetWriteDeadline implements Transport.
func (t *TCP) SetWriteDeadline(d time.Time) error { return t.conn().SetWriteDeadline(d) }

// Interrupt implements Transport.
func (t *TCP) Interrupt() { t.raw.SetDeadline(time.Now()) }

// CloseWrite implements Transport: TLS close_notify.
func (t *TCP) CloseWrite() {
	if tc, ok := t.conn().(*tls.Conn); ok {
		tc.CloseWrite()
	}
}

// Close implements Transport.
func (t *TCP) Close() error {
	t.conn().Close()
	return t.raw.Close()
}
