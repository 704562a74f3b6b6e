package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"dialtone/archive"
)

// A damaged chunk is an error, never a panic or a wrong message: every
// truncation and every flipped byte of a packed chunk, plain and
// compressed, decodes to an error or to messages that stay inside the
// data.
func TestDecodeDamagedChunk(t *testing.T) {
	for _, size := range []int{1, 40} { // plain (small) and S2 (past chunkCompressFrom)
		var msgs []archive.Message
		for i := range size {
			msgs = append(msgs, archive.Message{ID: 1000 + int64(i), WithResource: "phone",
				Stanza: fmt.Appendf(nil, "<message><body>message %d of the same conversation</body></message>", i)})
		}
		var scratch []byte
		data := packChunk(nil, &scratch, msgs)
		if want := byte(map[bool]int{false: chunkPlain, true: chunkS2}[size > 1]); data[0] != want {
			t.Fatalf("size %d: format %d, want %d", size, data[0], want)
		}
		got, err := decodeChunk("o", "w", 1000, data)
		if err != nil || len(got) != size || string(got[size-1].Stanza) != string(msgs[size-1].Stanza) {
			t.Fatalf("size %d: intact chunk: %d messages, %v", size, len(got), err)
		}
		for cut := 0; cut < len(data); cut++ {
			checkDamaged(t, data[:cut])
		}
		for i := range data {
			bad := append([]byte(nil), data...)
			bad[i] ^= 0xff
			checkDamaged(t, bad)
		}
	}
	for _, data := range [][]byte{nil, {7}, {chunkS2, 1, 2, 3}} {
		if _, err := decodeChunk("o", "w", 0, data); err == nil {
			t.Errorf("%v decoded without an error", data)
		}
	}
}

// checkDamaged decodes data (a damaged chunk): an error, or messages whose
// bytes are no longer than the data could hold.
func checkDamaged(t *testing.T, data []byte) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("decoding %x panicked: %v", data, r)
		}
	}()
	got, err := decodeChunk("o", "w", 1000, data)
	if err != nil {
		return
	}
	for _, m := range got {
		if len(m.Stanza) > 1<<20 || len(m.WithResource) > 1<<20 {
			t.Fatalf("decoding %x gave a message of %d bytes", data, len(m.Stanza))
		}
	}
}

// A query that meets a damaged row answers with an error that says so,
// and the server goes on: other owners' archives still read.
func TestQueryDamagedChunk(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var msgs []archive.Message
	for i, owner := range []string{"+15550001001", "+15550001002"} {
		for j := range 3 {
			msgs = append(msgs, archive.Message{Owner: owner, ID: int64(100*i + j + 1), With: "+15550001003@localhost",
				Stanza: fmt.Appendf(nil, "<message><body>%d</body></message>", j)})
		}
	}
	if err := db.AppendArchive(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if n, err := db.b.exec(ctx, `UPDATE archive_chunks SET data = ? WHERE owner = ?`, []byte{chunkS2, 0xff, 0xfe}, "+15550001001"); err != nil || n != 1 {
		t.Fatalf("damaging the row: %d, %v", n, err)
	}
	_, _, err = db.QueryArchive(ctx, archive.Query{Owner: "+15550001001", Max: 10})
	if err == nil || !strings.Contains(err.Error(), "archive chunk") {
		t.Fatalf("query of the damaged archive: %v, want an archive chunk error", err)
	}
	got, _, err := db.QueryArchive(ctx, archive.Query{Owner: "+15550001002", Max: 10})
	if err != nil || len(got) != 3 {
		t.Fatalf("query of the intact archive: %d messages, %v", len(got), err)
	}
}
