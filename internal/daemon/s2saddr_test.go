package daemon_test

import (
	"bufio"
	"encoding/xml"
	"net"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
)

// TestS2SAddrEmptyStillFederates: an empty XMPPD_S2S_ADDR stops only the
// federation listener; a message to another domain still makes the
// server open a link to that domain's server (SPEC.md).
func TestS2SAddrEmptyStillFederates(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	s := startDaemon(t, noticeEnv(t, "", map[string]string{
		"XMPPD_S2S_ADDR":   "",
		"XMPPD_S2S_ROUTES": "peer.test=" + peer.Addr().String(),
	}))
	if addr := s.d.Addr("s2s"); addr != "" {
		t.Errorf("a federation listener on %s", addr)
	}
	alice := s.newUser(t)
	a := s.login(t, alice, "x")
	a.Send(`<message type='chat' id='fed1' to='bob@peer.test'><body>hi</body></message>`)

	peer.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := peer.Accept()
	if err != nil {
		t.Fatalf("no link to peer.test: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := xml.NewDecoder(bufio.NewReader(c))
	var header xml.StartElement
	for header.Name.Local != "stream" {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("reading the stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			header = se
		}
	}
	attrs := map[string]string{}
	for _, at := range header.Attr {
		attrs[at.Name.Local] = at.Value
	}
	if attrs["to"] != "peer.test" || attrs["from"] != domain {
		t.Errorf("stream header %v", header.Attr)
	}
	// The peer goes away: the sender hears that the link failed.
	c.Close()
	e := a.Expect("the error", func(e xmpptest.Elem) bool { return e.Attr("id") == "fed1" })
	if e.Attr("type") != "error" || !strings.Contains(e.Inner, "remote-server-timeout") {
		t.Errorf("got %v, want remote-server-timeout", e)
	}
}
