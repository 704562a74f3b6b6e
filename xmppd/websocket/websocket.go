// Package websocket is XMPP over WebSocket (RFC 7395): the HTTP upgrade
// and an element-level stream.Transport. A frame carries whole elements
// both ways: what the client sends is read frame by frame by the stream's
// reader (wire.NewFrameReader), and what the server writes is handed over
// element by element, each in a frame of its own, never cut out of a byte
// stream. <open/> and <close/> stand for the stream's header and end.
package websocket

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// NSFraming is the namespace of RFC 7395's <open/> and <close/>.
const NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"

// Protocol is the WebSocket subprotocol a client must ask for.
const Protocol = "xmpp"

// CheckUpgrade answers a request that is no RFC 7395 upgrade (426 without
// a WebSocket upgrade, 400 without the subprotocol) and reports whether it
// is one.
func CheckUpgrade(w http.ResponseWriter, r *http.Request) bool {
	if !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "XMPP over WebSocket (RFC 7395): a WebSocket upgrade is required", http.StatusUpgradeRequired)
		return false
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", Protocol) {
		http.Error(w, `the WebSocket subprotocol "xmpp" is required (RFC 7395)`, http.StatusBadRequest)
		return false
	}
	return true
}

// headerHasToken reports whether the comma-separated header name lists
// token (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Accept upgrades the request (after CheckUpgrade) and returns the
// transport of its stream, whose elements may be max bytes long.
func Accept(w http.ResponseWriter, r *http.Request, max int) (*Transport, error) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{Protocol},
		// Streams authenticate with SASL, never with cookies, so web
		// clients served from other sites are welcome.
		OriginPatterns: []string{"*"},
	})
	if err != nil {
		return nil, err
	}
	return newTransport(ws, max), nil
}

// rawFrame is one frame as it came, or the error that ended reading.
type rawFrame struct {
	typ websocket.MessageType
	b   []byte
	err error
}

// Transport is a WebSocket carrying one XMPP stream (stream.Transport),
// whose reading side is a wire.FrameSource. One goroutine reads frames (so
// that read deadlines, which the stream engine relies on, do not close the
// WebSocket as a cancelled context would); it ends with the transport.
type Transport struct {
	ws  *websocket.Conn
	r   *wire.Reader
	max int

	in        chan rawFrame
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	dlMu      sync.Mutex
	readDL    time.Time
	dlChanged chan struct{} // closed and replaced when readDL changes
	writeDL   time.Time

	wmu    sync.Mutex
	opened bool // <open/> sent
	closed bool // <close/> sent
}

func newTransport(ws *websocket.Conn, max int) *Transport {
	// Frames over the stanza limit are answered with policy-violation by
	// readFrames; the library's own limit is only a backstop above it.
	ws.SetReadLimit(int64(max) + 1)
	t := &Transport{
		ws:        ws,
		max:       max,
		in:        make(chan rawFrame),
		done:      make(chan struct{}),
		dlChanged: make(chan struct{}),
	}
	t.r = wire.NewFrameReader(t, max)
	go t.readFrames()
	return t
}

// readFrames reads frames until the WebSocket ends or the transport is
// closed.
func (t *Transport) readFrames() {
	for {
		typ, rd, err := t.ws.Reader(context.Background())
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(rd, int64(t.max)+1))
		}
		if err != nil {
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway:
				err = io.EOF
			}
		}
		select {
		case t.in <- rawFrame{typ, b, err}:
		case <-t.done:
			return
		}
		if err != nil || len(b) > t.max {
			// The rest of a frame over the limit was not read: nothing
			// after it can be.
			return
		}
	}
}

// NextFrame implements wire.FrameSource: the next frame, read under the
// read deadline, checked and classified.
func (t *Transport) NextFrame() (wire.Frame, error) {
	for {
		t.dlMu.Lock()
		dl, changed := t.readDL, t.dlChanged
		t.dlMu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return wire.Frame{}, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		var f rawFrame
		var got bool
		select {
		case f = <-t.in:
			got = true
		case <-expired:
			return wire.Frame{}, os.ErrDeadlineExceeded
		case <-changed:
		case <-t.done:
			f, got = rawFrame{err: net.ErrClosed}, true
		}
		if timer != nil {
			timer.Stop()
		}
		if got {
			return classify(f, t.max)
		}
	}
}

// classify turns a frame into what the stream reads: RFC 7395's <open/>
// and <close/> (parsed here; they are small), or data for the stream's
// reader to check as it reads.
func classify(f rawFrame, max int) (wire.Frame, error) {
	switch {
	case f.err != nil:
		return wire.Frame{}, f.err
	case len(f.b) > max:
		return wire.Frame{}, wire.ErrStanzaTooBig
	case f.typ != websocket.MessageText:
		return wire.Frame{}, wire.NotWellFormedError("binary WebSocket frame")
	}
	head := bytes.TrimLeft(f.b, " \t\r\n")
	if !bytes.HasPrefix(head, []byte("<?xml")) && !isTag(head, "open") && !isTag(head, "close") {
		return wire.Frame{Data: f.b}, nil
	}
	return parseFraming(f.b)
}

// isTag reports whether b starts with the start tag of name.
func isTag(b []byte, name string) bool {
	if len(b) < len(name)+2 || b[0] != '<' || string(b[1:1+len(name)]) != name {
		return false
	}
	switch b[1+len(name)] {
	case ' ', '\t', '\r', '\n', '/', '>':
		return true
	}
	return false
}

// parseFraming reads a frame that may be <open/> or <close/>: one
// element of the framing namespace, alone but for an XML declaration.
// Anything else is data.
func parseFraming(b []byte) (wire.Frame, error) {
	dec := wire.NewDecoder(bytes.NewReader(b))
	var (
		depth int
		first *xml.StartElement
		count int
	)
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			// encoding/xml refuses some XML declarations with errors that
			// say nothing to a program: ask our own check why.
			if decl := b[off:]; !wire.IsNotWellFormed(err) && bytes.HasPrefix(decl, []byte("<?xml")) {
				if end := bytes.Index(decl, []byte("?>")); end > 0 {
					if derr := wire.CheckXMLDecl(decl[:end+2]); derr != nil {
						return wire.Frame{}, derr
					}
				}
			}
			return wire.Frame{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target == "xml" {
				if err := wire.CheckXMLDecl(b[off:dec.InputOffset()]); err != nil {
					return wire.Frame{}, err
				}
			}
		case xml.StartElement:
			if depth == 0 {
				count++
				if first == nil {
					s := t.Copy()
					first = &s
				}
			}
			if depth >= wire.MaxDepth {
				return wire.Frame{}, wire.ErrTooDeep
			}
			depth++
		case xml.EndElement:
			if depth == 0 {
				return wire.Frame{}, wire.NotWellFormedError("unbalanced element in a WebSocket frame")
			}
			depth--
		}
	}
	if depth > 0 {
		return wire.Frame{}, wire.NotWellFormedError("incomplete element in a WebSocket frame")
	}
	if first == nil || count != 1 || first.Name.Space != "" {
		return wire.Frame{Data: b}, nil
	}
	if ns, _ := wire.Attr(*first, "", "xmlns"); ns != NSFraming {
		return wire.Frame{Data: b}, nil
	}
	switch first.Name.Local {
	case "open":
		h := openHeader(*first)
		return wire.Frame{Open: &h}, nil
	case "close":
		return wire.Frame{Close: true}, nil
	}
	return wire.Frame{Data: b}, nil
}

// openHeader is the stream header <open/> stands for: the stream element
// with the content namespace of a client stream and <open/>'s attributes
// (those of RFC 7395 and any other), its own namespace declaration left
// out and its other prefixes kept.
func openHeader(open xml.StartElement) xml.StartElement {
	h := xml.StartElement{Name: xml.Name{Space: "stream", Local: "stream"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "xmlns"}, Value: router.NSClient},
		{Name: xml.Name{Space: "xmlns", Local: "stream"}, Value: stream.NSStream},
	}}
	for _, a := range open.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
		case a.Name.Space == "xmlns" && a.Name.Local == "stream":
		default:
			h.Attr = append(h.Attr, a)
		}
	}
	return h
}

// SetReadDeadline implements wire.FrameSource.
func (t *Transport) SetReadDeadline(d time.Time) error {
	t.dlMu.Lock()
	t.readDL = d
	close(t.dlChanged)
	t.dlChanged = make(chan struct{})
	t.dlMu.Unlock()
	return nil
}

// Reader implements stream.Transport.
func (t *Transport) Reader() *wire.Reader { return t.r }

// write sends frames, each one element, under the write deadline. Hold
// wmu.
func (t *Transport) write(frames ...[]byte) error {
	t.dlMu.Lock()
	dl := t.writeDL
	t.dlMu.Unlock()
	ctx := context.Background()
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	for _, f := range frames {
		if err := t.ws.Write(ctx, websocket.MessageText, f); err != nil {
			return err
		}
	}
	return nil
}

// WriteHeader implements stream.Transport: <open/>.
func (t *Transport) WriteHeader(h stream.Header) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.opened = true
	return t.write(h.AppendOpen(nil, NSFraming))
}

// WriteElements implements stream.Transport: one frame per element, each
// made to stand alone (RFC 7395 §3.3.3).
func (t *Transport) WriteElements(elems [][]byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	for _, el := range elems {
		if err := t.write(FrameElement(el)); err != nil {
			return err
		}
	}
	return nil
}

var closeFrame = wire.NewBuilder(nil).Element("close", NSFraming, "").Bytes()

// WriteEnd implements stream.Transport: the stream error in a frame of its
// own, then <close/>.
func (t *Transport) WriteEnd(cond, text string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if cond != "" {
		if err := t.write(FrameElement(stream.AppendError(nil, cond, text))); err != nil {
			return err
		}
	}
	t.closed = true
	return t.write(closeFrame)
}

// SetWriteDeadline implements stream.Transport.
func (t *Transport) SetWriteDeadline(d time.Time) error {
	t.dlMu.Lock()
	t.writeDL = d
	t.dlMu.Unlock()
	return nil
}

// Interrupt implements stream.Transport.
func (t *Transport) Interrupt() {
	now := time.Now()
	t.SetReadDeadline(now)
	t.SetWriteDeadline(now)
}

// CloseWrite implements stream.Transport: the WebSocket's closing
// handshake comes with Close.
func (t *Transport) CloseWrite() {}

// Close implements stream.Transport, with the WebSocket closing handshake.
// A stream left without its end (a client's <close/> during negotiation)
// is closed with <close/> first (RFC 7395 §3.6).
func (t *Transport) Close() error {
	err := net.ErrClosed
	t.closeOnce.Do(func() {
		close(t.done)
		t.wmu.Lock()
		if t.opened && !t.closed {
			t.SetWriteDeadline(time.Now().Add(time.Second))
			t.write(closeFrame)
			t.closed = true
		}
		t.wmu.Unlock()
		err = t.ws.Close(websocket.StatusNormalClosure, "")
	})
	return err
}

// CloseNow drops the WebSocket without the closing handshake (an evicted
// connection); it never blocks.
func (t *Transport) CloseNow() {
	t.closeOnce.Do(func() {
		close(t.done)
		t.ws.CloseNow()
	})
}

// FrameElement makes an element this server wrote stand alone in its frame
// (RFC 7395 §3.3.3): stream features and errors declare the stream prefix,
// stanzas get the jabber:client namespace. Only the start tag is looked
// at: the server's stanzas never declare a default namespace (see
// router.Stanza.Bytes), its stream elements never the stream prefix, but
// what is already declared is not declared twice.
func FrameElement(el []byte) []byte {
	name, end := tagName(el)
	var attr, ns string
	switch name {
	case "stream:features", "stream:error":
		attr, ns = "xmlns:stream", stream.NSStream
	case "message", "presence", "iq":
		attr, ns = "xmlns", router.NSClient
	default:
		return el
	}
	if declares(el[end:], attr) {
		return el
	}
	out := make([]byte, 0, len(el)+len(attr)+len(ns)+4)
	out = append(out, el[:end]...)
	out = wire.AppendAttr(out, attr, ns)
	return append(out, el[end:]...)
}

// tagName is the raw name of the start tag el begins with, and where the
// name ends.
func tagName(el []byte) (string, int) {
	if len(el) < 2 || el[0] != '<' {
		return "", 0
	}
	j := 1
	for j < len(el) && !strings.ContainsRune(" \t\r\n/>", rune(el[j])) {
		j++
	}
	return string(el[1:j]), j
}

// declares reports whether the attributes of a start tag (b, from after
// its name) include attr, walking them as they are written: name, '=',
// a quoted value.
func declares(b []byte, attr string) bool {
	i := 0
	for {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i >= len(b) || b[i] == '/' || b[i] == '>' {
			return false
		}
		eq := bytes.IndexByte(b[i:], '=')
		if eq < 0 {
			return false
		}
		name := strings.TrimRight(string(b[i:i+eq]), " \t\r\n")
		i += eq + 1
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i >= len(b) || b[i] != '"' && b[i] != '\'' {
			return false
		}
		q := bytes.IndexByte(b[i+1:], b[i])
		if q < 0 {
			return false
		}
		if name == attr {
			return true
		}
		i += q + 2
	}
}

var (
	_ stream.Transport = (*Transport)(nil)
	_ wire.FrameSource = (*Transport)(nil)
)
