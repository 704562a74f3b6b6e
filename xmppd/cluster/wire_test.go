package cluster

import (
	"bytes"
	"testing"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// TestEncodeDecode: fields come back as they went, empty ones included;
// a truncated message is refused, not misread.
func TestEncodeDecode(t *testing.T) {
	in := [][]byte{[]byte("n1"), nil, bytes.Repeat([]byte("x"), 300)}
	op, out, err := decode(encode(opSend, in...))
	if err != nil || op != opSend || len(out) != 3 || string(out[0]) != "n1" || len(out[1]) != 0 || len(out[2]) != 300 {
		t.Fatalf("decode = %c %q %v", op, out, err)
	}
	msg := encode(opSend, in...)
	if _, _, err := decode(msg[:len(msg)-1]); err == nil {
		t.Error("truncated message accepted")
	}
	if _, _, err := decode(nil); err == nil {
		t.Error("empty message accepted")
	}
}

// TestParseStanza: a stanza's bytes, as a mirror's Sink gets them, read
// back into a Stanza that can be routed or stored again.
func TestParseStanza(t *testing.T) {
	st := &router.Stanza{Kind: router.KindMessage, Type: "chat", ID: "m1",
		From: jid.MustParse("+821011112222@localhost/a"), To: jid.MustParse("+821033334444@localhost/b"),
		Inner: []byte(`<body>a &amp; b</body><x xmlns='urn:test'/>`)}
	got, err := parseStanza(st.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != router.KindMessage || got.Type != "chat" || got.ID != "m1" || !got.From.Equal(st.From) || !got.To.Equal(st.To) {
		t.Errorf("parsed %+v", got)
	}
	if !bytes.Equal(got.Bytes(), st.Bytes()) {
		t.Errorf("bytes\n got %s\nwant %s", got.Bytes(), st.Bytes())
	}
	if _, err := parseStanza([]byte("<message")); err == nil {
		t.Error("truncated stanza accepted")
	}
}
