package xmppd

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
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"dialtone/internal/forwarded"
	"dialtone/xmppd/wire"
)

// XMPP over WebSocket (RFC 7395). The core speaks a byte stream; wsConn
// adapts a WebSocket to it, so that negotiation and sessions run exactly
// as on a c2s connection: incoming frames become stream bytes (<open/>
// a stream header, <close/> the end of the stream) and what the core
// writes is cut into one complete element per frame.

// NSFraming is the namespace of RFC 7395's <open/> and <close/>.
const NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"

// WebSocketProtocol is the WebSocket subprotocol a client must ask for.
const WebSocketProtocol = "xmpp"

// ServeWebSocket serves GET /xmpp-websocket: it upgrades the request
// (subprotocol "xmpp" required: 426 without an upgrade, 400 without the
// subprotocol) and runs the client's stream until it ends. There is no
// STARTTLS: the stream is as secure as the HTTP connection, so PLAIN is
// offered only when the request came over TLS (here or at a trusted
// proxy, see package forwarded). The limits are those of
// c2s connections.
func (s *Server) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "XMPP over WebSocket (RFC 7395): a WebSocket upgrade is required", http.StatusUpgradeRequired)
		return
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", WebSocketProtocol) {
		http.Error(w, `the WebSocket subprotocol "xmpp" is required (RFC 7395)`, http.StatusBadRequest)
		return
	}
	ip := requestIP(r)
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	c := &conn{srv: s, ip: ip, websocket: true, secure: forwarded.ClientOf(r).HTTPS}
	// Evicted during the upgrade, the connection is closed as soon as it
	// exists (the HTTP server's timeouts bound the upgrade itself).
	var (
		evicted  atomic.Bool
		upgraded atomic.Pointer[wsConn]
	)
	if c.slot = s.pending.admit(ip, func() {
		evicted.Store(true)
		if wc := upgraded.Load(); wc != nil {
			wc.closeNow()
		}
	}); c.slot == nil {
		s.log.Warn("too many unauthenticated connections", "ip", ip)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{WebSocketProtocol},
		// Streams authenticate with SASL, never with cookies, so web
		// clients served from other sites are welcome.
		OriginPatterns: []string{"*"},
	})
	if err != nil {
		c.slot.release()
		s.log.Debug("WebSocket upgrade failed", "ip", ip, "err", err)
		return
	}
	s.m.Connections.WithLabelValues("websocket").Inc()
	wc := newWSConn(ws, r, s.cfg.MaxStanzaSize)
	c.raw, c.nc = wc, wc
	if upgraded.Store(wc); evicted.Load() {
		wc.closeNow()
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.slot.release()
		wc.closeNow()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	c.run() // on the handler's goroutine: the connection is hijacked
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

// requestIP is the client's address: the peer's, or what a trusted proxy
// forwarded (XMPPD_TRUSTED_PROXIES, resolved by the web handler).
func requestIP(r *http.Request) string { return forwarded.ClientOf(r).IP }

// wsAddr is a net.Addr for the HTTP connection's ends.
type wsAddr string

func (a wsAddr) Network() string { return "websocket" }
func (a wsAddr) String() string  { return string(a) }

// wsFrame is one incoming frame, translated, or the error that ended reading.
type wsFrame struct {
	b   []byte
	err error
}

// wsConn is a net.Conn over a WebSocket speaking RFC 7395. One goroutine
// reads frames (so that read deadlines, which the core relies on, do not
// close the WebSocket as a cancelled context would); Read hands their
// bytes on under the deadline. Write cuts the core's output into elements.
type wsConn struct {
	ws            *websocket.Conn
	local, remote net.Addr
	max           int

	in        chan wsFrame
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	cur []byte // rest of the current frame (Read's goroutine only)
	err error  // sticky read error

	dlMu      sync.Mutex
	readDL    time.Time
	dlChanged chan struct{} // closed and replaced when readDL changes
	writeDL   time.Time

	wmu    sync.Mutex
	wbuf   []byte // written bytes not yet framed (an incomplete element)
	opened bool   // <open/> sent
	closed bool   // <close/> sent
}

func newWSConn(ws *websocket.Conn, r *http.Request, max int) *wsConn {
	// Frames over the stanza limit are caught (and answered with
	// policy-violation) by readFrames; the library's own limit is only
	// a backstop above it.
	ws.SetReadLimit(int64(max) + 1)
	c := &wsConn{
		ws:        ws,
		remote:    wsAddr(r.RemoteAddr),
		local:     wsAddr(r.Host),
		max:       max,
		in:        make(chan wsFrame),
		done:      make(chan struct{}),
		dlChanged: make(chan struct{}),
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		c.local = a
	}
	go c.readFrames()
	return c
}

// readFrames reads and translates frames until the WebSocket ends.
func (c *wsConn) readFrames() {
	for {
		typ, r, err := c.ws.Reader(context.Background())
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(r, int64(c.max)+1))
		}
		switch {
		case err != nil:
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway:
				err = io.EOF
			}
		case len(b) > c.max:
			err = wire.ErrStanzaTooBig
		case typ != websocket.MessageText:
			err = wire.NotWellFormedError("binary WebSocket frame")
		default:
			b, err = wsTranslateIn(b)
		}
		select {
		case c.in <- wsFrame{b, err}:
		case <-c.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// wsTranslateIn checks that a frame holds complete, well-formed elements
// and turns RFC 7395's <open/> and <close/> into a stream header and end.
func wsTranslateIn(b []byte) ([]byte, error) {
	dec := wire.NewDecoder(bytes.NewReader(b))
	var (
		stack []xml.Name
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
						return nil, derr
					}
				}
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target == "xml" {
				if err := wire.CheckXMLDecl(b[off:dec.InputOffset()]); err != nil {
					return nil, err
				}
			}
		case xml.StartElement:
			if len(stack) == 0 {
				count++
				if first == nil {
					s := t.Copy()
					first = &s
				}
			}
			if len(stack) >= wire.MaxDepth {
				return nil, wire.ErrTooDeep
			}
			stack = append(stack, t.Name)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != t.Name {
				return nil, wire.NotWellFormedError("unbalanced element in a WebSocket frame")
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return nil, wire.NotWellFormedError("incomplete element in a WebSocket frame")
	}
	if first == nil || count != 1 || first.Name.Space != "" {
		return b, nil
	}
	if ns, _ := wire.Attr(*first, "", "xmlns"); ns != NSFraming {
		return b, nil
	}
	switch first.Name.Local {
	case "open":
		h := make([]byte, 0, 256)
		h = append(h, `<stream:stream xmlns="`+NSClient+`" xmlns:stream="`+nsStream+`"`...)
		h = appendPlainAttrs(h, first.Attr)
		// The header keeps the other prefixes <open/> declares: its
		// attributes may use them.
		for _, a := range first.Attr {
			if a.Name.Space == "xmlns" && a.Name.Local != "stream" {
				h = appendAttr(h, "xmlns:"+a.Name.Local, a.Value)
			}
		}
		return append(h, '>'), nil
	case "close":
		return []byte("</stream:stream>"), nil
	}
	return b, nil
}

// Read implements net.Conn.
func (c *wsConn) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.dlMu.Lock()
		dl, changed := c.readDL, c.dlChanged
		c.dlMu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		select {
		case f := <-c.in:
			c.cur, c.err = f.b, f.err
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-changed:
		case <-c.done:
			c.err = net.ErrClosed
		}
		if timer != nil {
			timer.Stop()
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// Write implements net.Conn: complete elements go out one per frame,
// the rest waits for the next Write.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, p...)
	frames, rest := wsSplit(c.wbuf)
	if len(frames) > 0 {
		c.dlMu.Lock()
		dl := c.writeDL
		c.dlMu.Unlock()
		ctx := context.Background()
		if !dl.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		for _, f := range frames {
			if err := c.ws.Write(ctx, websocket.MessageText, f); err != nil {
				c.wbuf = c.wbuf[:0]
				return 0, err
			}
			c.opened = c.opened || bytes.HasPrefix(f, []byte("<open "))
			c.closed = c.closed || bytes.HasPrefix(f, []byte("<close "))
		}
	}
	c.wbuf = append(c.wbuf[:0], rest...)
	if cap(c.wbuf) > 64<<10 && len(c.wbuf) == 0 {
		c.wbuf = nil
	}
	return len(p), nil
}

// Close implements net.Conn, with the WebSocket closing handshake. A
// stream the core leaves without its end (a client's <close/> during
// negotiation) is closed with <close/> first (RFC 7395 §3.6).
func (c *wsConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.done)
		c.wmu.Lock()
		if c.opened && !c.closed {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.ws.Write(ctx, websocket.MessageText, []byte(`<close xmlns="`+NSFraming+`"/>`))
			cancel()
			c.closed = true
		}
		c.wmu.Unlock()
		err = c.ws.Close(websocket.StatusNormalClosure, "")
	})
	return err
}

// closeNow drops the WebSocket without the closing handshake (an evicted
// connection); it never blocks.
func (c *wsConn) closeNow() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.ws.CloseNow()
	})
}

func (c *wsConn) LocalAddr() net.Addr  { return c.local }
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.readDL = t
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	c.dlMu.Unlock()
	return nil
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.writeDL = t
	c.dlMu.Unlock()
	return nil
}

// wsSplit cuts the core's output (well-formed XML: ours) into RFC 7395
// frames, and returns them with the bytes of an incomplete element that
// must wait for more. The XML declaration and whitespace between elements
// are dropped; the stream header becomes <open/> and its end <close/>.
func wsSplit(b []byte) (frames [][]byte, rest []byte) {
	depth, start, i := 0, 0, 0
	for i < len(b) {
		if b[i] != '<' {
			if depth == 0 {
				i++
				continue
			}
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				break
			}
			i += j
			continue
		}
		tok := b[i:]
		var end int // length of the markup at i; 0: incomplete
		switch {
		case bytes.HasPrefix(tok, []byte("<?")):
			end = markupEnd(tok, "?>")
		case bytes.HasPrefix(tok, []byte("<!--")):
			end = markupEnd(tok, "-->")
		case bytes.HasPrefix(tok, []byte("<![CDATA[")):
			end = markupEnd(tok, "]]>")
		case bytes.HasPrefix(tok, []byte("<!")):
			end = markupEnd(tok, ">")
		case bytes.HasPrefix(tok, []byte("</")):
			if end = markupEnd(tok, ">"); end == 0 {
				break
			}
			if depth == 0 {
				if string(bytes.TrimSpace(tok[2:end-1])) == "stream:stream" {
					frames = append(frames, []byte(`<close xmlns="`+NSFraming+`"/>`))
				}
				break
			}
			if depth--; depth == 0 {
				frames = append(frames, wsFrameElement(b[start:i+end]))
			}
		default:
			if end = tagEnd(tok); end == 0 {
				break
			}
			selfClosing := tok[end-2] == '/'
			if depth == 0 && !selfClosing && tagName(tok) == "stream:stream" {
				frames = append(frames, wsOpen(tok[:end]))
				break
			}
			if depth == 0 {
				start = i
			}
			if !selfClosing {
				depth++
			} else if depth == 0 {
				frames = append(frames, wsFrameElement(tok[:end]))
			}
		}
		if end == 0 {
			break // incomplete: wait for more
		}
		i += end
	}
	if depth > 0 {
		return frames, b[start:]
	}
	return frames, b[i:]
}

// markupEnd is the length of the markup at the start of b ending with
// term, or 0 when term has not come yet.
func markupEnd(b []byte, term string) int {
	j := bytes.Index(b[1:], []byte(term))
	if j < 0 {
		return 0
	}
	return 1 + j + len(term)
}

// tagEnd is the length of the start tag at the start of b (quoted
// attribute values may hold '>'), or 0 when it is incomplete.
func tagEnd(b []byte) int {
	var quote byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i + 1
		}
	}
	return 0
}

// tagName is the raw (prefixed) name of the tag at the start of b.
func tagName(b []byte) string {
	j := 1
	for j < len(b) && !strings.ContainsRune(" \t\r\n/>", rune(b[j])) {
		j++
	}
	return string(b[1:j])
}

// wsStartTag parses a start tag of our own output.
func wsStartTag(tag []byte) (xml.StartElement, bool) {
	tok, err := xml.NewDecoder(bytes.NewReader(tag)).RawToken()
	se, ok := tok.(xml.StartElement)
	return se, err == nil && ok
}

// wsOpen turns our stream header into <open/>.
func wsOpen(tag []byte) []byte {
	b := []byte(`<open xmlns="` + NSFraming + `"`)
	if se, ok := wsStartTag(tag); ok {
		b = appendPlainAttrs(b, se.Attr)
	}
	return append(b, "/>"...)
}

// appendPlainAttrs appends the raw attributes but namespace declarations
// (which differ between a stream header and RFC 7395's <open/>).
func appendPlainAttrs(b []byte, attrs []xml.Attr) []byte {
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
			continue
		}
		b = append(b, ' ')
		if a.Name.Space != "" {
			b = append(b, a.Name.Space...)
			b = append(b, ':')
		}
		b = append(b, a.Name.Local...)
		b = append(b, `="`...)
		b = AppendEscaped(b, a.Value)
		b = append(b, '"')
	}
	return b
}

// wsFrameElement makes a top-level element stand alone in its frame
// (RFC 7395 §3.3.3): the stream prefix is declared on stream features and
// errors, stanzas get the jabber:client namespace.
func wsFrameElement(el []byte) []byte {
	name := tagName(el)
	var decl string
	has := func(a xml.Attr) bool { return false }
	switch name {
	case "stream:features", "stream:error":
		decl = ` xmlns:stream="` + nsStream + `"`
		has = func(a xml.Attr) bool { return a.Name.Space == "xmlns" && a.Name.Local == "stream" }
	case "message", "presence", "iq":
		decl = ` xmlns="` + NSClient + `"`
		has = func(a xml.Attr) bool { return a.Name.Space == "" && a.Name.Local == "xmlns" }
	default:
		return el
	}
	if se, ok := wsStartTag(el[:tagEnd(el)]); ok {
		for _, a := range se.Attr {
			if has(a) {
				return el
			}
		}
	}
	n := 1 + len(name)
	out := make([]byte, 0, len(el)+len(decl))
	out = append(out, el[:n]...)
	out = append(out, decl...)
	return append(out, el[n:]...)
}

var _ net.Conn = (*wsConn)(nil)
