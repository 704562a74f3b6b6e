package main

import (
	"bufio"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRoom is a MUC room over net.Pipe: joins (the first one creates a
// locked room that the owner's instant form unlocks), and every groupchat
// message reflected to every occupant with its id and body, the way a MUC
// service writes it (from the occupant JID, other attributes, a
// stanza-id). bounce makes it answer the message of that id with an error
// instead.
type fakeRoom struct {
	jid    string
	bounce string

	mu    sync.Mutex
	conns map[string]*fakeConn // nick → occupant
	made  bool
}

// fakeConn writes from its own goroutine, as a socket's buffer would let
// a server write while the client writes too (net.Pipe has no buffer).
type fakeConn struct {
	out chan string
}

func (f *fakeConn) write(s string) { f.out <- s }

func (f *fakeRoom) serve(c net.Conn) {
	fc := &fakeConn{out: make(chan string, 100000)}
	go func() {
		for s := range fc.out {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, s); err != nil {
				return
			}
		}
	}()
	dec := xml.NewDecoder(c)
	dec.Strict = false
	var nick string
	defer func() {
		f.mu.Lock()
		if f.conns[nick] == fc {
			delete(f.conns, nick)
		}
		f.mu.Unlock()
		close(fc.out)
	}()
	for range 10000 {
		start, err := nextElement(dec)
		if err != nil {
			return
		}
		var el struct {
			To   string `xml:"to,attr"`
			ID   string `xml:"id,attr"`
			Type string `xml:"type,attr"`
			Body string `xml:"body"`
		}
		if err := dec.DecodeElement(&el, &start); err != nil {
			return
		}
		switch start.Name.Local {
		case "presence":
			nick = el.To[strings.IndexByte(el.To, '/')+1:]
			f.mu.Lock()
			code := "110"
			if !f.made {
				f.made, code = true, "201"
			}
			for other, oc := range f.conns {
				// Others' presence to the joiner, the joiner's to them.
				fc.write(`<presence from='` + f.jid + `/` + other + `'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>`)
				oc.write(`<presence from='` + f.jid + `/` + nick + `'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>`)
			}
			f.conns[nick] = fc
			f.mu.Unlock()
			fc.write(`<presence from="` + f.jid + `/` + nick + `"><x xmlns="http://jabber.org/protocol/muc#user"><item role="moderator"/><status code="110"/><status code="` + code + `"/></x></presence>`)
			fc.write(`<message from='` + f.jid + `' type='groupchat'><subject/></message>`)
		case "iq":
			fc.write(`<iq type='result' id='` + el.ID + `' from='` + el.To + `'/>`)
		case "message":
			if el.ID == f.bounce {
				fc.write(`<message type='error' id='` + el.ID + `' from='` + f.jid + `'><body>` + el.Body + `</body><error type='cancel'/></message>`)
				continue
			}
			f.mu.Lock()
			for _, oc := range f.conns {
				oc.write(`<message from="` + f.jid + `/` + nick + `" type="groupchat" id="` + el.ID + `" to="x@localhost/r"><body>` + el.Body +
					`</body><stanza-id xmlns="urn:xmpp:sid:0" id="s1" by="` + f.jid + `"/></message>`)
			}
			f.mu.Unlock()
		}
	}
}

// The room scenario joins every client (the first makes the room instant),
// sends each one's messages within its window, and counts every delivery
// by id: its own reflections and everyone else's, a bounce as an error.
func TestRoomScenario(t *testing.T) {
	const n, each = 4, 25
	room := &fakeRoom{jid: "load@groups.localhost", bounce: "dlt-9", conns: map[string]*fakeConn{}}
	var sessions []*session
	for range n {
		cl, sv := net.Pipe()
		go room.serve(sv)
		t.Cleanup(func() { sv.Close() })
		sessions = append(sessions, &session{conn: cl, r: bufio.NewReaderSize(cl, 4<<10), w: bufio.NewWriterSize(cl, 4<<10)})
	}
	c, err := parseFlags([]string{"--password", "pw", "--scenario", "room", "--muc", "groups.localhost", "--room", "load",
		"--clients", "4", "--messages", "25", "--window", "3", "--size", "40", "--drain", "5s", "--duration", "20s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := newResult(&c)
	err = roomRun(t.Context(), &c, sessions, r, io.Discard)
	// The bounced message (seq 9: sender 1's third) is an error, reaches
	// no one, and is not counted lost.
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, r)
	}
	if r.Sent != n*each || r.Errors != 1 || r.Received != n*(n*each-1) || r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("sent %d errors %d received %d lost %d dup %d", r.Sent, r.Errors, r.Received, r.Lost, r.Duplicates)
	}
	if r.MsgsPerSec <= 0 || r.SentPerSec <= 0 || r.LatMaxms <= 0 || r.Room != "load@groups.localhost" {
		t.Errorf("figures: %+v", r)
	}
}

func TestRoomFlagsBounded(t *testing.T) {
	base := []string{"--password", "pw", "--scenario", "room"}
	for _, extra := range [][]string{
		{},               // no --muc
		{"--muc", "a@b"}, // not a domain
		{"--muc", "g.x", "--room", "a/b"},
		{"--muc", "g.x", "--room", "dlt-1"},
		{"--muc", "g.x", "--messages", "0"},
		{"--muc", "g.x", "--clients", "20000", "--messages", "1"}, // 4e8 deliveries
	} {
		if _, err := parseFlags(append(append([]string{}, base...), extra...), io.Discard); err == nil {
			t.Errorf("%v: accepted", extra)
		}
	}
	c, err := parseFlags(append(base, "--muc", "groups.localhost"), io.Discard)
	if err != nil || !strings.HasPrefix(c.roomJID(), "load") || !strings.HasSuffix(c.roomJID(), "@groups.localhost") {
		t.Errorf("defaults: %q, %v", c.roomJID(), err)
	}
}
