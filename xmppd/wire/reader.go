// Package wire is the XML layer of the server: a reader that checks that
// what a peer sends is namespace-well-formed and keeps the raw bytes of
// each top-level element (so that stanzas are forwarded without being
// re-encoded), escaping, and a Builder through which the server and its
// modules write XML.
package wire

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Limits on what a peer may send.
const (
	// DefaultMaxStanzaSize is the largest stanza accepted (RFC 6120 §13.12
	// wants at least 10000 bytes).
	DefaultMaxStanzaSize = 256 << 10
	// MaxDepth bounds the nesting of elements in a stanza.
	MaxDepth = 64
)

// Errors of reading; package stream maps them to stream error conditions.
var (
	// ErrStanzaTooBig: a top-level element longer than the limit.
	ErrStanzaTooBig = errors.New("stanza too big")
	// ErrTooDeep: elements nested deeper than MaxDepth.
	ErrTooDeep = errors.New("element nesting too deep")
	// ErrIdle: nothing came in time.
	ErrIdle = errors.New("idle timeout")
	// ErrRestrictedXML: a comment, processing instruction or DTD.
	ErrRestrictedXML = errors.New("restricted XML")
	// ErrUnsupportedVersion: an XML declaration of another version than 1.0.
	ErrUnsupportedVersion = errors.New("XML 1.0 only")
	// ErrUnsupportedEncoding: an XML declaration of another encoding than UTF-8.
	ErrUnsupportedEncoding = errors.New("UTF-8 only")
	// ErrPeerClosed is ReadElement's io.EOF when the peer closed its
	// stream (its end tag, a WebSocket <close/>), as opposed to a
	// connection that just ended: errors.Is(ErrPeerClosed, io.EOF).
	ErrPeerClosed = fmt.Errorf("the peer closed its stream: %w", io.EOF)
)

// NotWellFormedError says why the input is not well-formed XML.
type NotWellFormedError string

func (e NotWellFormedError) Error() string { return "not well-formed: " + string(e) }

func errNotWellFormed(s string) error { return NotWellFormedError(s) }

// IsNotWellFormed reports whether err means that the input is not
// well-formed XML (encoding/xml's syntax errors, the reader's own checks,
// input that ends inside a token).
func IsNotWellFormed(err error) bool {
	var se *xml.SyntaxError
	var nw NotWellFormedError
	return errors.As(err, &se) || errors.As(err, &nw) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Conn is what a Reader reads from: a network connection, whose read
// deadline the Reader keeps itself.
type Conn interface {
	Read(p []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// Waiter is a Conn that can wait for input without reading it: on the
// socket alone, with a shallow stack, when it holds nothing already read
// from the network (a TLS connection's records). The Reader then gives
// back its read buffer while it waits, so that an idle stream holds
// neither a buffer nor a deep stack.
type Waiter interface {
	// Pending reports whether the Conn holds input that a Read would
	// return without the network.
	Pending() bool
	// WaitReadable waits until the network has input (or end of file, or
	// an error) for the next Read, until the read deadline.
	WaitReadable() error
}

// Parker is a Waiter that can also wait with no goroutine at all: the
// stack of a goroutine blocked on each idle stream was most of what an
// idle session cost.
type Parker interface {
	Waiter
	// Park arranges for resume to run, once, on a goroutine of its own,
	// when input (or end of file) comes, at deadline (none when zero),
	// or at Wake, and returns at once; false if it cannot park (the
	// caller then waits as a Waiter).
	Park(deadline time.Time, resume func()) bool
	// Wake runs the resume of a parked wait now (none: nothing). It may
	// be called from any goroutine.
	Wake()
}

// ErrParked is the error of a read that parked the stream (SetPark): the
// goroutine that read must leave the Reader alone; resume reads on.
var ErrParked = errors.New("wire: parked")

// brPool holds the read buffers of streams that are waiting.
var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// readBufSize is the read buffer of a byte stream: an element that fits
// takes the fast path (fast.go) however the stanzas before it were cut
// into reads. A stream holds one only while it reads (brPool).
const readBufSize = 4096

// Limiter is charged with the bytes of each read (a rate limit); it may
// make the reader wait.
type Limiter interface {
	Take(n int)
}

// Reader sits between the connection and encoding/xml: it hands the
// decoder bytes one at a time, records the raw bytes of the element being
// read (so it can be forwarded without re-encoding), enforces the size
// limit, checks what encoding/xml does not (namespaces, see wellformed.go),
// and keeps read deadlines itself, because encoding/xml makes every read
// error permanent. It belongs to one goroutine, the stream's reader.
type Reader struct {
	conn Conn
	src  io.Reader // conn's Read
	// br buffers src; nil while a Waiter waits (an idle stream holds no
	// read buffer: it comes from brPool when input does).
	br     *bufio.Reader
	waiter Waiter // conn as a Waiter, or nil
	parker Parker // conn as a Parker, or nil
	// Parking (SetPark): after parkAfter without input the stream waits
	// with no goroutine; resume runs when it must read on, and its
	// first wait keeps the deadline parkedDL of the wait it cut short.
	parkAfter time.Duration
	resume    func()
	resumed   bool
	parkedDL  time.Time
	dec       *xml.Decoder // of the current stream (a new one at each restart)
	// decParked: a parked stream dropped its decoder (nothing of it is
	// needed between elements); the next element gets a new one.
	decParked bool
	off       int64 // bytes handed to the decoder so far
	last      byte
	rec       bool
	buf       []byte
	count     int // bytes since the last top-level element ended
	max       int

	// The recording copies br's buffer in runs, not byte by byte: seg is
	// the part of it not yet copied to buf, from offset segOff on; lost
	// is set when the recording cannot be trusted.
	seg    []byte
	segOff int64
	lost   bool

	// Deadlines: fixed (negotiation) or idle (after bind). On the first idle
	// expiry onIdle is called (to send a ping) and reading goes on for
	// grace; the second expiry ends the stream.
	deadline time.Time
	idle     time.Duration
	grace    time.Duration
	onIdle   func() bool
	pinged   bool
	// stopAt (unix nanoseconds), once set by Stop from another goroutine,
	// is the last moment reading may go on.
	stopAt atomic.Int64

	limit Limiter // nil: no limit
	// ns is the namespace context of the stream being read.
	ns nsScope

	// frames, when set, is the source of a framed transport (RFC 7395):
	// each data frame is read by a decoder of its own over frame.
	frames FrameSource
	frame  bytes.Reader

	// slowOnly turns the fast path (fast.go) off: for the tests that
	// hold it to the slow one.
	slowOnly bool
}

// Frame is what a framed transport (XMPP over WebSocket, RFC 7395) reads:
// the header of a new stream (<open/>), the end of the stream (<close/>),
// or data, one or more complete top-level elements.
type Frame struct {
	Open  *xml.StartElement
	Close bool
	Data  []byte
}

// FrameSource is a framed transport's side of a Reader.
type FrameSource interface {
	// NextFrame waits for the next frame, until the read deadline.
	NextFrame() (Frame, error)
	SetReadDeadline(t time.Time) error
}

// NewReader returns a Reader of conn that refuses top-level elements
// longer than max bytes.
func NewReader(conn Conn, max int) *Reader {
	w := &Reader{max: max}
	w.Reset(conn)
	return w
}

// NewFrameReader returns a Reader of a framed transport: each frame must
// hold complete elements (RFC 7395 §3.3.3), which are checked as a byte
// stream's are, top-level elements no longer than max bytes.
func NewFrameReader(src FrameSource, max int) *Reader {
	w := &Reader{conn: frameConn{src}, frames: src, max: max}
	w.br = bufio.NewReaderSize(&w.frame, 1024)
	return w
}

// frameConn gives a frame source's deadline to the Reader.
type frameConn struct{ src FrameSource }

func (c frameConn) Read([]byte) (int, error)          { return 0, io.EOF }
func (c frameConn) SetReadDeadline(t time.Time) error { return c.src.SetReadDeadline(t) }

// readFunc adapts a Read method to io.Reader without re-wrapping conn's type.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// Reset points the reader at a new connection (after STARTTLS).
func (w *Reader) Reset(conn Conn) {
	w.conn = conn
	w.src = readFunc(conn.Read)
	w.waiter, _ = conn.(Waiter)
	w.parker, _ = conn.(Parker)
	if w.br == nil {
		w.br = bufio.NewReaderSize(w.src, readBufSize)
	} else {
		w.br.Reset(w.src)
	}
}

// Buffered is the number of bytes read from the connection and not yet
// handed on: after STARTTLS's <proceed/> there must be none.
func (w *Reader) Buffered() int {
	if w.br == nil {
		return 0
	}
	return w.br.Buffered()
}

// SetDeadline bounds all reading to t (a negotiation's deadline); the
// zero time removes the bound.
func (w *Reader) SetDeadline(t time.Time) { w.deadline = t }

// Deadline is the bound SetDeadline set.
func (w *Reader) Deadline() time.Time { return w.deadline }

// SetIdle replaces the fixed deadline with an idle policy: after idle
// without input onIdle is called (it returns false to give up at once)
// and reading goes on for grace more.
func (w *Reader) SetIdle(idle, grace time.Duration, onIdle func() bool) {
	w.deadline = time.Time{}
	w.idle, w.grace, w.onIdle = idle, grace, onIdle
}

// SetPark lets the reader park a stream (see Parker) that had no input
// for after while it waits between elements under the idle policy: the
// read returns ErrParked and resume runs later to read on (WaitInput
// again). Only a Conn that is a Parker parks.
func (w *Reader) SetPark(after time.Duration, resume func()) {
	w.parkAfter, w.resume = after, resume
}

// SetLimiter makes every read charge l.
func (w *Reader) SetLimiter(l Limiter) { w.limit = l }

// Stop bounds reading to after from now, whatever the deadline policy
// says: the stream is closing and the peer has that long to end its side.
// It may be called from any goroutine.
func (w *Reader) Stop(after time.Duration) {
	at := time.Now().Add(after)
	w.stopAt.Store(at.UnixNano())
	w.conn.SetReadDeadline(at)
	if w.parker != nil {
		w.parker.Wake()
	}
}

// ReadByte implements io.ByteReader for encoding/xml.
func (w *Reader) ReadByte() (byte, error) {
	if w.Buffered() == 0 {
		if w.rec {
			w.sync() // br's buffer is about to be overwritten
		}
		if err := w.fill(); err != nil {
			return 0, err
		}
		if w.rec {
			w.seg, _ = w.br.Peek(w.br.Buffered())
			w.segOff = w.off
		}
	}
	b, err := w.br.ReadByte()
	if err != nil {
		return 0, err
	}
	w.off++
	w.last = b
	w.count++
	if w.count > w.max {
		return 0, ErrStanzaTooBig
	}
	return b, nil
}

// Read implements io.Reader; encoding/xml uses ReadByte, so this is only
// here to satisfy the interface.
func (w *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := w.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// fill waits for more input under the current deadline policy. In a
// framed transport the input of a decoder is one frame: at its end there
// is no more.
func (w *Reader) fill() error {
	if w.frames != nil {
		_, err := w.br.Peek(1)
		return err
	}
	// The loop of wait, written out: this is the stack of every idle
	// connection, kept shallow.
	for {
		dl := w.nextDeadline()
		if w.resumed {
			dl, w.resumed = w.parkedDL, false
		}
		if err := w.setReadDeadline(dl); err != nil {
			return err
		}
		if w.waiter != nil && !w.rec && !w.waiter.Pending() {
			// Nothing anywhere but maybe in the socket: wait there, with
			// the buffer back in the pool.
			if w.br != nil {
				w.br.Reset(nil)
				brPool.Put(w.br)
				w.br = nil
			}
			if err := w.waitOrPark(dl); err != nil {
				if errors.Is(err, ErrParked) {
					return err
				}
				if again, err := w.retry(err); !again {
					return err
				}
				continue
			}
		}
		if w.br == nil {
			w.br = brPool.Get().(*bufio.Reader)
			w.br.Reset(w.src)
		}
		_, err := w.br.Peek(1)
		if err == nil {
			w.pinged = false
			if w.limit != nil {
				w.limit.Take(w.br.Buffered())
			}
			return nil
		}
		if again, err := w.retry(err); !again {
			return err
		}
	}
}

// waitOrPark waits for the socket to have input until dl, the read
// deadline already set: a while with this goroutine, then parked, when
// the stream may park.
func (w *Reader) waitOrPark(dl time.Time) error {
	if w.parker == nil || w.resume == nil || !w.deadline.IsZero() || w.stopAt.Load() != 0 ||
		!dl.IsZero() && time.Until(dl) <= w.parkAfter {
		return w.waiter.WaitReadable()
	}
	if err := w.setReadDeadline(time.Now().Add(w.parkAfter)); err != nil {
		return err
	}
	err := w.waiter.WaitReadable()
	if err == nil {
		// Input: the rest of it (a TLS record may come in parts) is read
		// under the real deadline, not the short one of this wait.
		return w.setReadDeadline(dl)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || w.stopAt.Load() != 0 {
		return err // a real error, or Stop's deadline
	}
	if err := w.setReadDeadline(dl); err != nil {
		return err
	}
	// A parked stream keeps no scratch: the recording buffer (as long as
	// the longest element read) and the namespace scratch grow again
	// when input comes.
	w.buf = nil
	w.ns.dropScratch()
	// Nor a decoder (about 400 bytes with its buffers, a third of them
	// in small objects that kept a login's garbage pages): between
	// elements it holds no state the stream needs (the namespaces are
	// ns's, RawToken keeps no element stack), unless a byte is held back.
	if w.dec != nil && w.frames == nil && w.off == w.dec.InputOffset() {
		w.dec, w.decParked = nil, true
	}
	// Set before parking: the resumed goroutine may run at once.
	w.parkedDL, w.resumed = dl, true
	if !w.parker.Park(dl, w.resume) {
		w.resumed = false
		return w.waiter.WaitReadable()
	}
	// A Stop before Park could not wake it: wake it now.
	if w.stopAt.Load() != 0 {
		w.parker.Wake()
	}
	return ErrParked
}

// wait runs read (which blocks until input comes or the read deadline)
// under the current deadline policy: the fixed deadline, or the idle one
// with its ping.
func (w *Reader) wait(read func() error) error {
	for {
		if err := w.setReadDeadline(w.nextDeadline()); err != nil {
			return err
		}
		err := read()
		if err == nil {
			w.pinged = false
			return nil
		}
		if again, err := w.retry(err); !again {
			return err
		}
	}
}

// nextDeadline is the read deadline the policy sets now.
func (w *Reader) nextDeadline() time.Time {
	switch {
	case !w.deadline.IsZero():
		return w.deadline
	case w.idle > 0 && w.pinged:
		return time.Now().Add(w.grace)
	case w.idle > 0:
		return time.Now().Add(w.idle)
	}
	return time.Time{}
}

// retry handles a read error: again on the first idle expiry, when the
// peer was pinged; otherwise the error that ends reading (ErrIdle for a
// timeout).
func (w *Reader) retry(err error) (again bool, out error) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false, err
	}
	if w.deadline.IsZero() && w.idle > 0 && !w.pinged && w.onIdle != nil && w.stopAt.Load() == 0 {
		w.pinged = true
		if w.onIdle() {
			return true, nil
		}
	}
	return false, ErrIdle
}

// setReadDeadline sets dl, or the bound of Stop when there is one: Stop
// sets its bound before its deadline, so one of the two calls that race
// here sets it last.
func (w *Reader) setReadDeadline(dl time.Time) error {
	if stop := w.stopAt.Load(); stop != 0 {
		return w.conn.SetReadDeadline(time.Unix(0, stop))
	}
	if err := w.conn.SetReadDeadline(dl); err != nil {
		return err
	}
	if stop := w.stopAt.Load(); stop != 0 {
		return w.conn.SetReadDeadline(time.Unix(0, stop))
	}
	return nil
}

// nextFrame waits for the next frame under the deadline policy.
func (w *Reader) nextFrame() (Frame, error) {
	var f Frame
	err := w.wait(func() error {
		var err error
		f, err = w.frames.NextFrame()
		if err == nil && w.limit != nil {
			w.limit.Take(len(f.Data))
		}
		return err
	})
	return f, err
}

// startFrame makes the data of f the input of a new decoder.
func (w *Reader) startFrame(data []byte) {
	w.frame.Reset(data)
	w.br.Reset(&w.frame)
	w.dec = NewDecoder(w)
	w.off = 0
}

// WaitInput waits for the next element, dropping the white space before
// it (keep-alives), with a shallow stack: an idle connection's goroutine
// waits here, not inside ReadElement. Call it between elements.
func (w *Reader) WaitInput() error {
	if w.frames != nil {
		return nil // a framed transport waits in NextFrame
	}
	return w.skipSpace()
}

// skipSpace waits for input and drops whitespace (keep-alives) before the
// next top-level element, here rather than deep inside the XML decoder:
// an idle stream's stack then stays small. Only call it between elements
// (the decoder holds no look-ahead byte there): the bytes it drops never
// reach the decoder, nor its offset nor the capture.
func (w *Reader) skipSpace() error {
	for {
		if w.Buffered() == 0 {
			if err := w.fill(); err != nil {
				return err
			}
		}
		b, err := w.br.Peek(1)
		if err != nil {
			return err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			w.br.ReadByte()
		default:
			return nil
		}
	}
}

// startCapture begins recording raw bytes at the decoder's position.
// Recording copies from the read buffer in runs (when the decoder's bytes
// are needed, and before the buffer is refilled), not byte by byte.
func (w *Reader) startCapture(dec *xml.Decoder) {
	w.buf = w.buf[:0]
	w.lost = false
	if w.off > dec.InputOffset() { // the decoder holds back one byte
		w.buf = append(w.buf, w.last)
	}
	w.rec = true
	w.seg = nil
	if w.br != nil {
		w.seg, _ = w.br.Peek(w.br.Buffered())
	}
	w.segOff = w.off
}

// sync appends to buf the bytes of seg the decoder has read since.
func (w *Reader) sync() {
	n := w.off - w.segOff
	if n < 0 || n > int64(len(w.seg)) {
		// Only ReadByte takes bytes from br while recording, and it syncs
		// before a refill: this cannot happen, but never forward a guess.
		w.lost = true
		n = 0
	}
	w.buf = append(w.buf, w.seg[:n]...)
	w.seg = w.seg[n:]
	w.segOff = w.off
}

// captured returns the bytes recorded so far: the decoder's bytes from
// startCapture on, and maybe its look-ahead byte.
func (w *Reader) captured() ([]byte, error) {
	w.sync()
	if w.lost {
		return nil, errNotWellFormed("lost track of the input")
	}
	return w.buf, nil
}

// stopCapture ends recording and returns the bytes consumed by the decoder
// since startCapture, not including its look-ahead byte.
func (w *Reader) stopCapture(dec *xml.Decoder, base int64) ([]byte, error) {
	buf, err := w.captured()
	w.rec = false
	w.seg = nil
	n := dec.InputOffset() - base
	if err == nil && (n < 0 || n > int64(len(buf))) {
		err = errNotWellFormed("lost track of the input")
	}
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// Element is one top-level element read from a stream.
type Element struct {
	Start xml.StartElement // raw names: Space is the prefix
	Name  xml.Name         // Start's name, namespace resolved
	Inner []byte           // raw children (nil when empty)
	First xml.Name         // first child, namespace resolved
	// Carry are the declarations of the stream header that the element
	// uses: written on its start tag, they keep it namespace-well-formed
	// in any stream it is forwarded to.
	Carry []xml.Attr
}

// NewDecoder returns a decoder that refuses what XMPP does not allow:
// strict, UTF-8 only.
func NewDecoder(r io.Reader) *xml.Decoder {
	dec := xml.NewDecoder(r)
	dec.Strict = true
	dec.CharsetReader = refuseCharset
	return dec
}

// ReadHeader starts reading a stream (a new decoder for each restart): an
// optional XML declaration, white space, and the stream header, whose
// declarations become the namespace context of the stream's elements. It
// returns the header for the caller to check what it says.
func (w *Reader) ReadHeader() (xml.StartElement, error) {
	if w.frames != nil {
		f, err := w.nextFrame()
		switch {
		case err != nil:
			return xml.StartElement{}, err
		case f.Close:
			return xml.StartElement{}, io.EOF
		case f.Open != nil:
			w.dec = nil
			return *f.Open, w.ns.setHeader(*f.Open)
		}
		// Not <open/>: read as a header, to be refused as one.
		w.startFrame(f.Data)
		return w.readHeader(w.dec)
	}
	return w.readHeader(NewDecoder(w))
}

// readHeader reads a stream header with dec.
func (w *Reader) readHeader(dec *xml.Decoder) (xml.StartElement, error) {
	w.dec, w.decParked = dec, false
	w.count = 0
	w.off = 0 // offsets are the decoder's
	declared := false
	for {
		w.startCapture(dec)
		base := dec.InputOffset()
		tok, err := dec.RawToken()
		raw, rerr := w.stopCapture(dec, base)
		if err == nil {
			err = rerr
		}
		if err != nil {
			// encoding/xml refuses some declarations with errors that say
			// nothing to a program: ask our own check why.
			if !IsNotWellFormed(err) && bytes.HasPrefix(raw, []byte("<?xml")) && bytes.HasSuffix(raw, []byte("?>")) {
				if derr := CheckXMLDecl(raw); derr != nil {
					return xml.StartElement{}, derr
				}
			}
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return xml.StartElement{}, ErrRestrictedXML
			}
			if declared {
				return xml.StartElement{}, errNotWellFormed("a second XML declaration")
			}
			declared = true
			if err := CheckXMLDecl(raw); err != nil {
				return xml.StartElement{}, err
			}
		case xml.CharData:
			if !IsSpace(t) {
				return xml.StartElement{}, errNotWellFormed("text before the stream header")
			}
		case xml.StartElement:
			if err := checkTagSyntax(raw, t); err != nil {
				return t, err
			}
			return t, w.ns.setHeader(t)
		default:
			return xml.StartElement{}, ErrRestrictedXML
		}
	}
}

// HeaderNS is the namespace of the stream header's name.
func (w *Reader) HeaderNS() string { return w.ns.headerNS() }

// DefaultNS is the default namespace the stream header declares: the
// stream's content namespace.
func (w *Reader) DefaultNS() string { return w.ns.defaultNS() }

// ReadElement reads the next top-level element after the stream header
// and checks it is namespace-well-formed in the stream's context. It
// returns io.EOF when the peer closed the stream (the end tag of its
// header, or the end of the connection between elements). Whitespace
// between elements (keep-alives) is skipped.
func (w *Reader) ReadElement() (Element, error) {
	if w.frames != nil {
		return w.readFramed()
	}
	if w.dec == nil && !w.decParked {
		return Element{}, errors.New("wire: no stream header read")
	}
	if err := w.skipSpace(); err != nil {
		return Element{}, err
	}
	if el, ok := w.fastElement(); ok {
		return el, nil
	}
	if w.decParked {
		w.dec, w.decParked = NewDecoder(w), false
		w.off = 0 // offsets are the decoder's
	}
	el, err := readElement(w.dec, w)
	if errors.Is(err, errEndTag) {
		err = ErrPeerClosed
	}
	return el, err
}

// readFramed reads the next element of a framed transport: from the frame
// being read, or the next ones. An element must end in the frame it
// started in.
func (w *Reader) readFramed() (Element, error) {
	for {
		if w.dec != nil {
			el, err := readElement(w.dec, w)
			switch {
			case err == nil:
				return el, nil
			case errors.Is(err, errEndTag):
				return el, ErrPeerClosed
			case errors.Is(err, io.EOF) && el.Start.Name.Local != "", errors.Is(err, io.ErrUnexpectedEOF):
				return el, errNotWellFormed("incomplete element in a WebSocket frame")
			case !errors.Is(err, io.EOF):
				return el, err
			}
			w.dec = nil // the frame is done
		}
		f, err := w.nextFrame()
		switch {
		case err != nil:
			return Element{}, err
		case f.Close:
			return Element{}, ErrPeerClosed
		case f.Open != nil:
			// A header inside the stream: an element no one expects.
			return Element{Start: *f.Open, Name: xml.Name{Space: w.ns.headerNS(), Local: f.Open.Name.Local}}, nil
		}
		w.startFrame(f.Data)
	}
}

// errEndTag is readElement's end of the stream: the header's end tag.
var errEndTag = errors.New("wire: the end of the stream")

// readElement reads one element with dec from w's input.
func readElement(dec *xml.Decoder, w *Reader) (Element, error) {
	var el Element
	ns := &w.ns
	ns.reset()
	// The capture starts before the start tag, whose raw bytes are checked
	// too; base is the decoder offset of the capture's first byte.
	var base int64
	for {
		w.count = 0
		w.startCapture(dec)
		base = dec.InputOffset()
		tok, err := dec.RawToken()
		if err != nil {
			w.rec = false
			return el, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !IsSpace(t) {
				w.rec = false
				return el, errNotWellFormed("text outside a stanza")
			}
			continue
		case xml.EndElement:
			w.rec = false
			if t.Name != ns.end {
				return el, errNotWellFormed("end tag </" + QName(t.Name) + "> outside any element")
			}
			return el, errEndTag
		case xml.StartElement:
			el.Start = t.Copy()
		default:
			w.rec = false
			return el, ErrRestrictedXML
		}
		break
	}
	tagEnd := dec.InputOffset() - base
	name, err := checkStart(w, ns, el.Start, 0, tagEnd, true)
	if err != nil {
		w.rec = false
		return el, err
	}
	el.Name = name
	for ns.depth() > 0 {
		from := dec.InputOffset() - base
		tok, err := dec.RawToken()
		if err != nil {
			w.rec = false
			return el, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if ns.depth() >= MaxDepth {
				w.rec = false
				return el, ErrTooDeep
			}
			name, err := checkStart(w, ns, t, from, dec.InputOffset()-base, ns.depth() == 1 && el.First.Local == "")
			if err != nil {
				w.rec = false
				return el, err
			}
			if ns.depth() == 2 && el.First.Local == "" {
				el.First = name
			}
		case xml.EndElement:
			if !ns.endElement(t.Name) {
				w.rec = false
				return el, errNotWellFormed("element closed by </" + QName(t.Name) + ">")
			}
		case xml.CharData:
			// encoding/xml decodes a reference to a surrogate into
			// U+FFFD: only then are the raw bytes (unless a CDATA
			// section) worth a look.
			if bytes.Contains(t, []byte("\uFFFD")) {
				raw, err := rawToken(w, from, dec.InputOffset()-base)
				if err == nil && !bytes.HasPrefix(raw, []byte("<![CDATA[")) {
					err = checkCharRefs(raw)
				}
				if err != nil {
					w.rec = false
					return el, err
				}
			}
		default:
			w.rec = false
			return el, ErrRestrictedXML
		}
	}
	raw, err := w.stopCapture(dec, base)
	if err != nil {
		return el, err
	}
	// raw is the start tag, then the children and the end tag unless it
	// was self-closing.
	if int64(len(raw)) > tagEnd {
		if i := bytes.LastIndexByte(raw, '<'); int64(i) > tagEnd {
			el.Inner = append([]byte(nil), raw[tagEnd:i]...)
		}
	}
	if len(ns.carry) > 0 {
		el.Carry = append([]xml.Attr(nil), ns.carry...)
	}
	return el, nil
}

// checkStart checks a start tag, the captured bytes from:to, and opens
// its namespace scope. Its resolved name is returned when asked for.
func checkStart(w *Reader, ns *nsScope, t xml.StartElement, from, to int64, resolve bool) (xml.Name, error) {
	tag, err := rawToken(w, from, to)
	if err != nil {
		return xml.Name{}, err
	}
	if err := checkTagSyntax(tag, t); err != nil {
		return xml.Name{}, err
	}
	return ns.start(t, resolve)
}

// rawToken returns the captured bytes from:to.
func rawToken(w *Reader, from, to int64) ([]byte, error) {
	buf, err := w.captured()
	if err != nil {
		return nil, err
	}
	if from < 0 || to > int64(len(buf)) || from > to {
		return nil, errNotWellFormed("lost track of the input")
	}
	return buf[from:to], nil
}

// QName is the raw (prefixed) form of a name as encoding/xml's RawToken
// gives it.
func QName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// IsSpace reports whether b is XML white space only.
func IsSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// Attr returns the value of the raw attribute with the given prefix and
// local name.
func Attr(el xml.StartElement, space, local string) (string, bool) {
	for _, a := range el.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}
