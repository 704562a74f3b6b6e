package wellformedtest

import (
	"io"
	"time"
)

// Header is a client's stream header, for tests that read stanzas after it.
const Header = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

// Conn feeds fixed bytes to a stream reader as if they came from a peer;
// deadlines are ignored.
type Conn struct{ R io.Reader }

// Read implements io.Reader.
func (c Conn) Read(b []byte) (int, error) { return c.R.Read(b) }

// SetReadDeadline does nothing.
func (c Conn) SetReadDeadline(time.Time) error { return nil }
