package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"time"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// The messages between nodes: an op byte, then fields, each a uvarint
// length and its bytes. Small and copy-free to read; a stanza's bytes
// travel as they are.
const (
	// On a node's state subject (everyone listens):
	opBeat   byte = 'h' // boot id: the node is alive
	opUpsert byte = 'u' // full JID, available "1"/"0", presence children, xml:lang
	opUnbind byte = 'x' // full JID
	opBye    byte = 'b' // the node leaves: drop its sessions now
	opForget byte = 'f' // topic, key: drop what you cache of key (Invalidate)

	// On a node's own subject:
	opSend  byte = 's' // sender node, seq, full JID, stanza bytes
	opClose byte = 'c' // full JID, condition, text
	opDump  byte = 'd' // the asking node: announce all your sessions

	// On an ask subject (Ask, OnAsk): the asking node, the question.
	opAsk byte = 'q'

	// On a node's ack subject: seqs of stanzas written to their session.
	opAck byte = 'a'
)

var errShort = errors.New("cluster: truncated message")

// encode makes a message of op and its fields.
func encode(op byte, fields ...[]byte) []byte {
	n := 1
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 1, n)
	b[0] = op
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decode splits a message into its op and fields (which share msg).
func decode(msg []byte) (op byte, fields [][]byte, err error) {
	if len(msg) == 0 {
		return 0, nil, errShort
	}
	op, rest := msg[0], msg[1:]
	for len(rest) > 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return 0, nil, errShort
		}
		fields = append(fields, rest[k:k+int(n)])
		rest = rest[k+int(n):]
	}
	return op, fields, nil
}

// parseStanza reads back a stanza serialised by Stanza.Bytes (for the
// rare paths that must route or store it again: its session went away).
func parseStanza(b []byte) (*router.Stanza, error) {
	const header = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`
	rd := wire.NewReader(readerConn{io.MultiReader(strings.NewReader(header), bytes.NewReader(b))}, len(b)+1024)
	if _, err := rd.ReadHeader(); err != nil {
		return nil, err
	}
	el, err := rd.ReadElement()
	if err != nil {
		return nil, err
	}
	return router.Parse(el, router.NSClient, nil)
}

// readerConn gives a byte reader the deadline method wire.Reader wants.
type readerConn struct{ io.Reader }

func (readerConn) SetReadDeadline(time.Time) error { return nil }
