package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"dialtone/xmppd/internal/wellformedtest"
)

// readEach reads every element after the header (at most 100) from r,
// with or without the fast path; it returns the elements, the error that
// ended the reading, and the bytes the decoder saw after the header.
func readEach(r io.Reader, slowOnly bool) ([]Element, error, int64) {
	var conn Conn = wellformedtest.Conn{R: r}
	if p, ok := r.(*pendingReader); ok {
		conn = p
	}
	w := NewReader(conn, 1<<12)
	w.slowOnly = slowOnly
	if _, err := w.ReadHeader(); err != nil {
		return nil, err, 0
	}
	seen := w.off
	var out []Element
	for range 100 {
		el, err := w.ReadElement()
		if err != nil {
			return out, err, w.off - seen
		}
		out = append(out, el)
	}
	return out, nil, w.off - seen
}

// sameError reports whether two errors of reading say the same: the same
// sentinel, or both not well-formed (encoding/xml's messages carry line
// numbers, which differ when the fast path read some lines).
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	for _, s := range []error{ErrStanzaTooBig, ErrTooDeep, ErrRestrictedXML, ErrPeerClosed, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	if IsNotWellFormed(a) != IsNotWellFormed(b) {
		return false
	}
	var na, nb NotWellFormedError
	if errors.As(a, &na) && errors.As(b, &nb) {
		return na == nb
	}
	return true
}

// pendingReader is a connection that says (as a Waiter) when it holds
// more input: the fast path may then read on for an element cut by a
// read.
type pendingReader struct {
	chunkReader
	left func() int
}

func (p *pendingReader) SetReadDeadline(time.Time) error { return nil }
func (p *pendingReader) Pending() bool                   { return p.left() > 0 }
func (p *pendingReader) WaitReadable() error             { return nil }

func newPendingReader(b []byte, each int) *pendingReader {
	r := bytes.NewReader(b)
	return &pendingReader{chunkReader: chunkReader{r: r, each: each}, left: r.Len}
}

// fastSeeds are streams (after the header) of what clients send, and of
// what the fast path must leave to the slow one.
var fastSeeds = []string{
	`<message to='+821055550002@localhost' id='m1' type='chat'><body>hello &amp; &lt;bye&gt; &#x1F600; &#65; 안녕</body><request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/><origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>`,
	`<presence/><iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq><r xmlns='urn:xmpp:sm:3'/>`,
	`<message xmlns:x='urn:x' x:attr='v'><x:y x:z='1'>z</x:y></message>`,
	`<message><body><![CDATA[<not markup> &#xD800;]]></body></message>`,
	`<message xml:lang='en'><body xml:lang='ko' xmlns=''>x</body></message>`,
	`<message><stream:x/></message>`,
	`<message><x xmlns='urn:x' a='1' a='2'/></message>`,
	`<message><p:x/></message>`,
	`<message><x xmlns:xml='urn:bad'/></message>`,
	`<message><x xmlns:p='' /></message>`,
	`<message><body>&#xD800;</body></message>`,
	`<message><body>&#0;</body></message>`,
	`<message><body>&foo;</body></message>`,
	`<message><body>&amp</body></message>`,
	`<message><body>a ]]> b</body></message>`,
	`<message><x a='1'b='2'/></message>`,
	`<message to='a@b' to='c@d'/>`,
	`<message to='a&amp;b' id="q'uote"><body a='x&#13;y' b="c
d">t</body></message>`,
	`<message id='a>b' type = "chat" ><body>x</body ></message >`,
	`<message><body>` + "\x01" + `</body></message>`,
	`<message><body>` + "\xff\xfe" + `</body></message>`,
	`<message><body>` + "\uFFFE" + `</body></message>`,
	`<message><a></b></message>`,
	`<message><a/></message></message>`,
	`<message><!-- c --></message>`,
	`<message><?pi x?></message>`,
	`<message><:a/></message>`,
	`<message><a:/></message>`,
	`<message><a:b:c/></message>`,
	`<message><1a/></message>`,
	`<message><é/></message>`,
	`<message xmlns='jabber:server'/>`,
	`<message a=b/>`,
	`<message a='<'/>`,
	`<message/ >`,
	`< message/>`,
	`text<message/>`,
	`</stream:stream>`,
	`<message>` + strings.Repeat(`<a>`, 70) + strings.Repeat(`</a>`, 70) + `</message>`,
	`<message><body>` + strings.Repeat(`x`, 5000) + `</body></message><presence/>`,
	"<message>\r\n<body>\r</body>\r\n</message>\n<presence/>",
	`<message><x xmlns:h='urn:h' h:a='1' h:b='2'><h:y/></x></message>`,
	`<message><stream:features/><stream:error/></message>`,
	`<iq type='set' id='1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r&#x20;1</resource></bind></iq>`,
}

// The fast path reads what clients send without encoding/xml, and the
// same elements come out.
func TestFastPathReadsCommonStanzas(t *testing.T) {
	in := fastSeeds[0] + " " + fastSeeds[1] + "\n" + fastSeeds[2] + fastSeeds[4] + fastSeeds[41]
	fast, ferr, seen := readEach(strings.NewReader(fuzzHeader+in), false)
	slow, serr, _ := readEach(strings.NewReader(fuzzHeader+in), true)
	if len(fast) != 7 || !errors.Is(ferr, io.EOF) || !sameError(ferr, serr) {
		t.Fatalf("fast: %d elements, %v; slow: %d, %v", len(fast), ferr, len(slow), serr)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast\n%+v\nslow\n%+v", fast, slow)
	}
	if seen != 0 {
		t.Fatalf("the decoder read %d bytes: the fast path left some of these elements to it", seen)
	}
}

// Whatever the fast path accepts, the slow path accepts as the same
// element; what it leaves, the slow path reads from the same byte: the
// two read the same elements and stop on the same error, however the
// input is cut into reads.
func FuzzFastMatchesSlow(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), uint8(0), uint8(0))
		f.Add([]byte(s), uint8(7), uint8(1))
		f.Add([]byte(s), uint8(0), uint8(2))
	}
	// Headers whose declarations the elements may use (and must carry).
	headers := []string{
		fuzzHeader,
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' version='1.0'>`,
		`<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' xmlns:p='urn:p'>`,
	}
	f.Fuzz(func(t *testing.T, data []byte, cut, header uint8) {
		in := append([]byte(headers[int(header)%len(headers)]), data...)
		reader := func() io.Reader {
			switch {
			case cut == 0:
				return bytes.NewReader(in)
			case cut%2 == 1:
				return newPendingReader(in, int(cut))
			}
			// Reads of cut%13+1 bytes at most: elements end everywhere
			// in the read buffer.
			return &chunkReader{r: bytes.NewReader(in), n: int(cut) % 13}
		}
		fast, ferr, _ := readEach(reader(), false)
		slow, serr, _ := readEach(reader(), true)
		if !reflect.DeepEqual(fast, slow) || !sameError(ferr, serr) {
			t.Fatalf("input %q\nfast: %+v, %v\nslow: %+v, %v", data, fast, ferr, slow, serr)
		}
	})
}

// An element cut by a read is read on when the connection holds more.
func TestFastPathReadsOnAcrossReads(t *testing.T) {
	in := fuzzHeader + strings.Repeat(fastSeeds[0]+fastSeeds[1], 10)
	fast, ferr, seen := readEach(newPendingReader([]byte(in), 100), false)
	slow, serr, _ := readEach(strings.NewReader(in), true)
	if len(fast) != 40 || !errors.Is(ferr, io.EOF) || !sameError(ferr, serr) || !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast: %d elements, %v; slow: %d, %v", len(fast), ferr, len(slow), serr)
	}
	if seen != 0 {
		t.Fatalf("the decoder read %d bytes: the fast path left elements cut by reads to it", seen)
	}
}

// Reads byte by byte never find a whole element buffered: the slow path
// reads all of it.
func TestFastPathLeavesPartialElements(t *testing.T) {
	in := fuzzHeader + fastSeeds[0] + fastSeeds[1]
	got, err, seen := readEach(iotest.OneByteReader(strings.NewReader(in)), false)
	if len(got) != 4 || !errors.Is(err, io.EOF) || seen == 0 {
		t.Fatalf("%d elements, %v, the decoder saw %d bytes", len(got), err, seen)
	}
}

func BenchmarkReadElement(b *testing.B) {
	for _, mode := range []struct {
		name string
		slow bool
	}{{"fast", false}, {"slow", true}} {
		b.Run(mode.name, func(b *testing.B) {
			stanza := []byte(fastSeeds[0])
			const per = 64
			stream := append([]byte(fuzzHeader), bytes.Repeat(stanza, per)...)
			stream = append(bytes.Repeat([]byte(" "), len(stanza)-len(fuzzHeader)%len(stanza)), stream...)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				// A read a stanza, as TLS records bring them.
				w := NewReader(wellformedtest.Conn{R: &chunkReader{r: bytes.NewReader(stream), n: -1, each: len(stanza)}}, 1<<16)
				w.slowOnly = mode.slow
				if _, err := w.ReadHeader(); err != nil {
					b.Fatal(err)
				}
				for range per {
					if _, err := w.ReadElement(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
