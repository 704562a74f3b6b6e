package stream

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingConn records each Write on a connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(b))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// TestHeaderAndFeaturesOneWrite: our header and the features after it go
// to a TCP stream in one write (one TLS record once secured); a header
// alone is still a write of its own.
func TestHeaderAndFeaturesOneWrite(t *testing.T) {
	cc := &countingConn{Conn: readingPeer(t)}
	c := NewConn(NewTCP(cc, 1<<16), &Config{WriteTimeout: 10 * time.Second, QueueSize: 8, QueueBytes: 1 << 16})
	h := Header{ContentNS: "jabber:client", ID: "s1", From: "localhost"}
	feat := []byte(`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>`)
	if err := c.WriteHeader(h, feat); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.writes) != 2 {
		t.Fatalf("%d writes, want 2: %q", len(cc.writes), cc.writes)
	}
	first := string(cc.writes[0])
	if !strings.HasPrefix(first, string(h.Append(nil))) || !strings.HasSuffix(first, string(feat)) {
		t.Errorf("first write %q: want the header, then the features", first)
	}
	if got := string(cc.writes[1]); got != string(h.Append(nil)) {
		t.Errorf("second write %q: want the header alone", got)
	}
}
