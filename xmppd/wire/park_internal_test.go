package wire

import (
	"encoding/xml"
	"errors"
	"sync"
	"testing"
	"time"
)

// parkConn is a Parker over bytes the test feeds: input resumes a
// parked wait, as the poller does for a socket.
type parkConn struct {
	mu       sync.Mutex
	data     []byte
	deadline time.Time
	arrived  chan struct{}
	resume   func()
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (c *parkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.data) == 0 {
		return 0, timeoutError{}
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *parkConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *parkConn) Pending() bool { return false }

func (c *parkConn) WaitReadable() error {
	for {
		c.mu.Lock()
		n, dl := len(c.data), c.deadline
		c.mu.Unlock()
		if n > 0 {
			return nil
		}
		wait := time.Hour
		if !dl.IsZero() {
			wait = time.Until(dl)
		}
		if wait <= 0 {
			return timeoutError{}
		}
		select {
		case <-c.arrived:
		case <-time.After(wait):
		}
	}
}

func (c *parkConn) Park(_ time.Time, resume func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.data) > 0 {
		return false
	}
	c.resume = resume
	return true
}

func (c *parkConn) Wake() {}

func (c *parkConn) feed(s string) {
	c.mu.Lock()
	c.data = append(c.data, s...)
	resume := c.resume
	c.resume = nil
	c.mu.Unlock()
	if resume != nil {
		go resume()
		return
	}
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// A parked stream holds no recording buffer nor namespace scratch, and
// reads on as before once input comes: the element after it keeps its
// raw bytes and its namespaces.
func TestParkedReaderDropsScratch(t *testing.T) {
	c := &parkConn{arrived: make(chan struct{}, 1)}
	r := NewReader(c, 1<<16)
	r.SetDeadline(time.Now().Add(10 * time.Second))
	c.feed(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>` +
		`<message><body>a long enough body to grow the buffer</body></message>`)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan struct{}, 1)
	r.SetIdle(time.Hour, time.Hour, func() bool { return true })
	r.SetPark(20*time.Millisecond, func() { resumed <- struct{}{} })
	if err := r.WaitInput(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadElement(); err != nil {
		t.Fatal(err)
	}
	if cap(r.buf) == 0 {
		t.Fatal("no recording buffer after an element: the test tests nothing")
	}
	if err := r.WaitInput(); !errors.Is(err, ErrParked) {
		t.Fatalf("WaitInput = %v, want ErrParked", err)
	}
	if r.buf != nil || r.ns.open != nil || r.ns.keys != nil || r.dec != nil {
		t.Fatalf("parked with scratch: buf %d, open %d, keys %d, decoder %v", cap(r.buf), cap(r.ns.open), cap(r.ns.keys), r.dec != nil)
	}
	const next = `<iq type='get' id='1'><x:q xmlns:x='urn:x' x:a='1'/></iq>`
	c.feed(next)
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("not resumed by input")
	}
	if err := r.WaitInput(); err != nil {
		t.Fatal(err)
	}
	el, err := r.ReadElement()
	if err != nil {
		t.Fatal(err)
	}
	if el.Name.Local != "iq" || el.First.Space != "urn:x" || string(el.Inner) != `<x:q xmlns:x='urn:x' x:a='1'/>` {
		t.Fatalf("after parking: %+v inner %q", el.Name, el.Inner)
	}
	// Parked again, with the decoder made after the last park: the next
	// element's raw bytes and the stream's end still read right.
	if err := r.WaitInput(); !errors.Is(err, ErrParked) {
		t.Fatalf("second WaitInput = %v, want ErrParked", err)
	}
	c.feed(`<presence/><message to='a@b'><body>x</body></message></stream:stream>`)
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("not resumed by input")
	}
	for _, want := range []struct{ name, inner string }{{"presence", ""}, {"message", "<body>x</body>"}} {
		if err := r.WaitInput(); err != nil {
			t.Fatal(err)
		}
		el, err := r.ReadElement()
		if err != nil || el.Name != (xml.Name{Space: "jabber:client", Local: want.name}) || string(el.Inner) != want.inner {
			t.Fatalf("after the second park: %v inner %q, %v; want %s inner %q", el.Name, el.Inner, err, want.name, want.inner)
		}
	}
	if err := r.WaitInput(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadElement(); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("the stream's end tag after parking: %v, want ErrPeerClosed", err)
	}
}

// A parked stream whose decoder holds a byte back keeps it: that byte is
// the start of the next element.
func TestParkedReaderKeepsDecoderHoldingAByte(t *testing.T) {
	c := &parkConn{arrived: make(chan struct{}, 1)}
	r := NewReader(c, 1<<16)
	r.SetDeadline(time.Now().Add(10 * time.Second))
	c.feed(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	r.off++ // as if the decoder held one byte back
	r.SetIdle(time.Hour, time.Hour, func() bool { return true })
	r.SetPark(time.Millisecond, func() {})
	if err := r.WaitInput(); !errors.Is(err, ErrParked) {
		t.Fatalf("WaitInput = %v, want ErrParked", err)
	}
	if r.dec == nil {
		t.Fatal("the decoder holding a byte was dropped")
	}
}
