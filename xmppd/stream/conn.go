// Package stream is the stream engine of the server, one for c2s, s2s and
// WebSocket streams: stream headers (read, checked, written, restarted),
// STARTTLS, stream errors and the one mapping from errors to their
// conditions, deadlines, and the bounded queue that writes to a peer
// without ever blocking the writer's caller. Transports carry the stream:
// TCP with TLS here, WebSocket in package websocket. It also holds what
// every listener shares: the table of unauthenticated connections, the
// byte rate limit, the accept loop and the metrics.
package stream

import (
	"encoding/xml"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"dialtone/xmppd/wire"
)

// Config is what the streams of one listener share.
type Config struct {
	// WriteTimeout bounds one write to the peer.
	WriteTimeout time.Duration
	// QueueSize and QueueBytes bound a stream's write queue, in elements
	// and in bytes; a stream over either is closed with policy-violation.
	QueueSize, QueueBytes int
	// Metrics counts stream errors and the queues' peak.
	Metrics *Metrics
}

// Conn is one stream, in either direction: its transport, its reader, the
// writes of its negotiation, then its write queue. The reader belongs to
// one goroutine; the writes may come from any.
type Conn struct {
	t   Transport
	r   *wire.Reader
	cfg *Config

	wmu         sync.Mutex // held by whoever writes to the transport
	interrupted bool       // a shutdown cut the stream short (under wmu)
	headerSent  atomic.Bool
	fallback    Header // written before a stream error when no header was

	out outQueue
	// The stream's two events, closing (Close) and done (the final write
	// finished), as flags with channels made only for a waiter: nobody
	// waits on them before the stream ends, and two channels were two
	// small objects of every idle session, which pinned heap pages full
	// of a login's garbage (fragmentation).
	evMu     sync.Mutex
	killed   atomic.Bool // Close ran
	finished bool        // the final write finished (under evMu)
	killCh   chan struct{}
	doneCh   chan struct{}
	cond     string // the stream error to end with ("" = a plain end)
	text     string
	closing  func() // called once when the stream starts closing
	overflow func() // called when the queue overflows
}

// closedChan is what a wait on an event that happened gets.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// waitChan is the channel of an event (ch made on first use), closed
// once happened is. Under evMu.
func waitChan(ch *chan struct{}, happened bool) <-chan struct{} {
	if *ch == nil {
		if happened {
			return closedChan
		}
		*ch = make(chan struct{})
	}
	return *ch
}

// NewConn returns the stream engine of t.
func NewConn(t Transport, cfg *Config) *Conn {
	return &Conn{
		t:   t,
		r:   t.Reader(),
		cfg: cfg,
		out: outQueue{max: cfg.QueueSize},
	}
}

// Transport is the stream's transport.
func (c *Conn) Transport() Transport { return c.t }

// Reader reads the peer's side.
func (c *Conn) Reader() *wire.Reader { return c.r }

// OnClose sets what runs once, at once, when the stream starts closing
// (the owner stops routing to it). Set it before the stream is shared.
func (c *Conn) OnClose(f func()) { c.closing = f }

// OnOverflow sets what runs when the write queue overflows, before the
// stream closes with policy-violation (a log line, a metric).
func (c *Conn) OnOverflow(f func()) { c.overflow = f }

// SetFallbackHeader is the header written before a stream error when the
// stream ends before its header was sent.
func (c *Conn) SetFallbackHeader(h Header) { c.fallback = h }

// ReadHeader reads the peer's stream header: a new stream (at the start,
// and after each restart), which our next header answers.
func (c *Conn) ReadHeader() (xml.StartElement, error) {
	c.headerSent.Store(false)
	return c.r.ReadHeader()
}

// WriteHeader writes our stream header, and then elems (the features
// that follow it): over TCP in one write, which is one TLS record and one
// system call where there were two (three headers in every login).
func (c *Conn) WriteHeader(h Header, elems ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.interrupted {
		return net.ErrClosed
	}
	c.headerSent.Store(true)
	c.t.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if t, ok := c.t.(*TCP); ok && len(elems) > 0 {
		return t.write(append([][]byte{h.Append(nil)}, elems...)...)
	}
	if err := c.t.WriteHeader(h); err != nil || len(elems) == 0 {
		return err
	}
	return c.t.WriteElements(elems)
}

// Write writes elements now, past the queue: the negotiation's own
// writes, whose failure ends the stream.
func (c *Conn) Write(elems ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.interrupted {
		return net.ErrClosed
	}
	c.t.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	return c.t.WriteElements(elems)
}

// Interrupt cuts a stream short for a shutdown: the reads and writes under
// way fail, and the stream ends with system-shutdown.
func (c *Conn) Interrupt() {
	c.wmu.Lock()
	c.interrupted = true
	c.wmu.Unlock()
	c.t.Interrupt()
}

// Lock and Unlock hold the stream's writes (while a TLS handshake swaps
// the connection under them).
func (c *Conn) Lock()   { c.wmu.Lock() }
func (c *Conn) Unlock() { c.wmu.Unlock() }

// Start lets the queue's writers run: what was sent before goes out now.
// Starting twice does nothing more.
func (c *Conn) Start() {
	c.out.open(func() { go c.writeBurst() }, func() { go c.finishWrites() })
}

// Send queues b, one complete element, and never blocks: a peer that
// does not keep up (more than QueueSize elements or QueueBytes bytes
// waiting) has its stream closed with policy-violation. False when the
// stream is closing.
func (c *Conn) Send(b []byte) bool {
	ok, full := c.out.push(b, c.cfg.QueueBytes, c.cfg.Metrics)
	if full {
		if c.overflow != nil {
			c.overflow()
		}
		c.Close("policy-violation", "too much waiting for a peer that does not read")
	}
	return ok
}

// Close ends the stream with a stream error condition ("" for a plain
// end) after what is queued; true the first time.
func (c *Conn) Close(cond, text string) bool {
	c.evMu.Lock()
	if c.killed.Load() {
		c.evMu.Unlock()
		return false
	}
	c.cond, c.text = cond, text
	c.killed.Store(true) // after cond: EndCondition reads it once this is seen
	if c.killCh != nil {
		close(c.killCh)
	}
	c.evMu.Unlock()
	if c.closing != nil {
		c.closing()
	}
	c.out.kill()
	return true
}

// EndCondition is the stream error condition the stream ends with ("" for
// a plain end), once it is closing: who closed it first decides.
func (c *Conn) EndCondition() string {
	if !c.Closed() {
		return ""
	}
	return c.cond
}

// Closing is closed when the stream starts closing.
func (c *Conn) Closing() <-chan struct{} {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	return waitChan(&c.killCh, c.killed.Load())
}

// Closed reports whether the stream is closing.
func (c *Conn) Closed() bool { return c.killed.Load() }

// Done is closed when the final write (the end of the stream) finished.
func (c *Conn) Done() <-chan struct{} {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	return waitChan(&c.doneCh, c.finished)
}

// finish marks the final write finished.
func (c *Conn) finish() {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	c.finished = true
	if c.doneCh != nil {
		close(c.doneCh)
	}
}

// Fail ends a stream whose reading or negotiation failed with the stream
// error err calls for (system-shutdown when interrupted), waits for the
// end to be written and closes the transport. It returns the condition.
func (c *Conn) Fail(err error) (cond, text string) {
	c.wmu.Lock()
	interrupted := c.interrupted
	c.wmu.Unlock()
	cond, text = Condition(err)
	if interrupted {
		// That is what the peer is told, as every stream is (SPEC.md).
		cond, text = "system-shutdown", ""
	}
	c.Start()
	c.Close(cond, text)
	c.Finish()
	return cond, text
}

// Finish waits (a bounded time) for the end of the stream to be written
// and closes the transport.
func (c *Conn) Finish() {
	select {
	case <-c.Done():
	case <-time.After(c.cfg.WriteTimeout + 5*time.Second):
	}
	c.t.Close()
}

// writeBurst runs while the queue has something: it writes whatever has
// queued up, at most about 64 KiB per call so that the queue's byte count
// follows what the connection took, and ends when the queue is empty or
// the stream closes (the final writer then takes the rest).
func (c *Conn) writeBurst() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		items := c.out.take()
		if items == nil {
			return
		}
		var err error
		for rest := items; len(rest) > 0 && err == nil; {
			n, size := 0, 0
			for n < len(rest) && (n == 0 || size+len(rest[n]) <= 64<<10) {
				size += len(rest[n])
				n++
			}
			c.t.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			if err = c.t.WriteElements(rest[:n]); err == nil {
				c.out.wrote(size)
			}
			rest = rest[n:]
		}
		c.out.give(items)
		if err != nil {
			c.t.Close()
			c.out.close()
			c.Close("", "")
			return
		}
	}
}

// finishWrites writes what is still queued and the end of the stream (the
// stream error, if any, in a stream: after our header if none was sent),
// then gives the peer a moment to end its side before reading stops.
func (c *Conn) finishWrites() {
	defer c.finish()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	items := c.out.close()
	deadline := 5 * time.Second
	if c.interrupted {
		deadline = time.Second // a peer that does not read must not hold up a shutdown
	}
	c.t.SetWriteDeadline(time.Now().Add(deadline))
	if len(items) > 0 {
		c.t.WriteElements(items)
	}
	if c.cond != "" {
		c.cfg.Metrics.StreamErrors.WithLabelValues(c.cond).Inc()
		if !c.headerSent.Load() {
			c.t.WriteHeader(c.fallback)
			c.headerSent.Store(true)
		}
	}
	if c.headerSent.Load() {
		c.t.WriteEnd(c.cond, c.text)
		c.t.CloseWrite()
	}
	c.r.Stop(2 * time.Second)
}
