package stream

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"sync"
	"unsafe"
)

// tlsBuffers are the offsets in tls.Conn of the buffers trimTLS gives
// back; ok is false when they are not as expected (another Go release):
// then nothing is trimmed, and TestTLSWaitSeesRecordsReadTogether fails.
var tlsBuffers = sync.OnceValue(func() (b struct {
	rawInput, input, hand uintptr
	ok                    bool
}) {
	t := reflect.TypeFor[tls.Conn]()
	raw, ok1 := t.FieldByName("rawInput")
	in, ok2 := t.FieldByName("input")
	hand, ok3 := t.FieldByName("hand")
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	b.ok = ok1 && ok2 && ok3 && raw.Type == buf && in.Type == rd && hand.Type == buf &&
		len(raw.Index) == 1 && len(in.Index) == 1 && len(hand.Index) == 1
	b.rawInput, b.input, b.hand = raw.Offset, in.Offset, hand.Offset
	return b
})

// trimTLS gives back the read buffers crypto/tls keeps for a connection's
// life when they are empty: its raw input and handshake buffers grow to
// hold the ClientHello (over 2 KiB each with a post-quantum key share)
// and never shrink, and were a third of an idle session's heap. crypto/tls
// has no API for it, so the fields are found by name and type. Only the
// stream's reader may call it, between reads (the writer never touches
// them after the handshake). It reports whether it trimmed.
func trimTLS(tc *tls.Conn) bool {
	b := tlsBuffers()
	if !b.ok {
		return false
	}
	p := unsafe.Pointer(tc)
	raw := (*bytes.Buffer)(unsafe.Add(p, b.rawInput))
	in := (*bytes.Reader)(unsafe.Add(p, b.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, b.hand))
	if raw.Len() != 0 || in.Len() != 0 || hand.Len() != 0 {
		return false
	}
	*raw, *in, *hand = bytes.Buffer{}, bytes.Reader{}, bytes.Buffer{}
	return true
}
