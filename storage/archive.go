package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/klauspost/compress/s2"

	"dialtone/archive"
	"dialtone/auth"
)

var _ archive.Store = (*DB)(nil)

// The archive is kept in chunks: one row holds the messages of one owner
// with one party that one batch of the write-behind queue brought (group
// commit), so that a busy server writes a row, and updates its indexes,
// per conversation and batch rather than per message. A chunk covers the
// ids first_id..last_id; chunks of one owner with different parties
// overlap in ids, so a query reads them in last_id order and keeps a
// message only once no chunk still unread can hold an older (or newer)
// one. A chunk spans at most chunkMaxSpan ids, which bounds how far such a
// read looks ahead.
const (
	// chunkMaxMessages and chunkMaxBytes bound one chunk: a query decodes
	// whole chunks, so they stay small next to a page.
	chunkMaxMessages = 128
	chunkMaxBytes    = 64 << 10
	// chunkMaxSpan is the greatest last_id - first_id of a chunk: 100 ms
	// of ids (archive.CounterBits per millisecond). A forward read looks
	// this far past its page: at a second, the oldest page of an archive
	// of 5,000 parties took 4.6 ms instead of 0.3. A busy conversation's
	// batch (the writer lingers 250 ms) is cut in a few chunks, whose
	// index entries share the owner's index pages: cheap.
	chunkMaxSpan = int64(100) << archive.CounterBits
	// chunksPerRead is how many chunks a query reads per round trip.
	chunksPerRead = 32
)

// chunk is one row of archive_chunks.
type chunk struct {
	owner, with string
	first, last int64
	msgs        []archive.Message
}

// Chunk data formats: the first byte of a row's data.
const (
	chunkPlain = 0
	// chunkS2 is the plain form compressed with S2 (a Snappy relative,
	// about a gigabyte a second): the stanzas of one conversation repeat
	// most of their bytes, and what the write does not send to the
	// database's log it need not write and sync.
	chunkS2 = 1
	// chunkCompressFrom is the least plain size worth compressing.
	chunkCompressFrom = 512
)

// packChunk appends the row's data to buf: encodeChunk's form of msgs
// (built in *scratch, which it keeps for the next chunk), compressed when
// large enough to gain (S2 finds what consecutive stanzas repeat). One
// buffer for a batch's rows and one scratch spare the writer an
// allocation per chunk.
func packChunk(buf []byte, scratch *[]byte, msgs []archive.Message) []byte {
	plain := encodeChunk((*scratch)[:0], msgs)
	*scratch = plain
	if len(plain) < chunkCompressFrom {
		return append(append(buf, chunkPlain), plain...)
	}
	buf = append(buf, chunkS2)
	at := len(buf)
	buf = slices.Grow(buf, s2.MaxEncodedLen(len(plain)))
	return buf[:at+len(s2.Encode(buf[at:at+s2.MaxEncodedLen(len(plain))], plain))]
}

// unpackChunk is packChunk's data in the plain form.
func unpackChunk(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, errors.New("storage: archive chunk: empty")
	}
	switch data[0] {
	case chunkPlain:
		return data[1:], nil
	case chunkS2:
		plain, err := s2.Decode(nil, data[1:])
		if err != nil {
			return nil, fmt.Errorf("storage: archive chunk: %w", err)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("storage: archive chunk: format %d", data[0])
}

// encodeChunk is the plain form of a row's data: per message the id minus
// first_id, the resource and the stanza, each length-prefixed (uvarints).
func encodeChunk(out []byte, msgs []archive.Message) []byte {
	size := 0
	for _, m := range msgs {
		size += 3*binary.MaxVarintLen64 + len(m.WithResource) + len(m.Stanza)
	}
	out = slices.Grow(out, size)
	first := msgs[0].ID
	for _, m := range msgs {
		out = binary.AppendUvarint(out, uint64(m.ID-first))
		out = binary.AppendUvarint(out, uint64(len(m.WithResource)))
		out = append(out, m.WithResource...)
		out = binary.AppendUvarint(out, uint64(len(m.Stanza)))
		out = append(out, m.Stanza...)
	}
	return out
}

// decodeChunk reads a row's data back into messages of owner with with.
func decodeChunk(owner, with string, first int64, data []byte) ([]archive.Message, error) {
	data, err := unpackChunk(data)
	if err != nil {
		return nil, err
	}
	var out []archive.Message
	bad := errors.New("storage: archive chunk: malformed")
	next := func() (uint64, error) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, bad
		}
		data = data[n:]
		return v, nil
	}
	bytesOf := func() ([]byte, error) {
		n, err := next()
		if err != nil || n > uint64(len(data)) {
			return nil, bad
		}
		b := data[:n:n]
		data = data[n:]
		return b, nil
	}
	for len(data) > 0 {
		d, err := next()
		if err != nil {
			return nil, err
		}
		res, err := bytesOf()
		if err != nil {
			return nil, err
		}
		st, err := bytesOf()
		if err != nil {
			return nil, err
		}
		out = append(out, archive.Message{Owner: owner, ID: first + int64(d), With: with, WithResource: string(res), Stanza: st})
	}
	return out, nil
}

// chunksOf groups a batch into chunks: by owner and party, in id order,
// cut at the bounds of a chunk. The chunks share one copy of the batch,
// laid out group by group (a counting sort: no message moved twice).
func chunksOf(msgs []archive.Message) []chunk {
	type conversation struct{ owner, with string }
	at := make(map[conversation]int) // → group
	group := make([]int, len(msgs))
	var count []int
	for i, m := range msgs {
		k := conversation{m.Owner, m.With}
		g, ok := at[k]
		if !ok {
			g = len(count)
			at[k] = g
			count = append(count, 0)
		}
		group[i] = g
		count[g]++
	}
	start := make([]int, len(count)+1)
	for g, n := range count {
		start[g+1] = start[g] + n
	}
	laid := make([]archive.Message, len(msgs))
	next := slices.Clone(start[:len(count)])
	for i, m := range msgs {
		laid[next[group[i]]] = m
		next[group[i]]++
	}
	byID := func(a, b archive.Message) int { return cmp.Compare(a.ID, b.ID) }
	var out []chunk
	for g := range count {
		gm := laid[start[g]:start[g+1]]
		// The queue is nearly in id order: usually already sorted.
		if !slices.IsSortedFunc(gm, byID) {
			slices.SortStableFunc(gm, byID)
		}
		// The same message twice in a batch (a retry) is kept once.
		gm = slices.CompactFunc(gm, func(a, b archive.Message) bool { return a.ID == b.ID })
		from, size := 0, 0
		for i, m := range gm {
			if i > from && (i-from >= chunkMaxMessages || size+len(m.Stanza) > chunkMaxBytes || m.ID-gm[from].ID > chunkMaxSpan) {
				out = append(out, chunk{owner: m.Owner, with: m.With, first: gm[from].ID, last: gm[i-1].ID, msgs: gm[from:i]})
				from, size = i, 0
			}
			size += len(m.Stanza)
		}
		if len(gm) > from {
			last := gm[len(gm)-1]
			out = append(out, chunk{owner: last.Owner, with: last.With, first: gm[from].ID, last: last.ID, msgs: gm[from:]})
		}
	}
	return out
}

// archiveRowsPerInsert bounds one multi-row INSERT (6 parameters a row:
// far below both engines' limits on parameters). Within a SQLite
// transaction each distinct statement is compiled once (preparedTx), so a
// batch of many chunks compiles at most two.
const archiveRowsPerInsert = 200

const insertChunk = `INSERT INTO archive_chunks (owner, last_id, first_id, with_jid, n, data) VALUES (?, ?, ?, ?, ?, ?)`

// AppendArchive implements archive.Store: the batch in one transaction, a
// row per chunk. A chunk already stored (a batch retried after a commit
// whose answer was lost) is kept as it was.
func (db *DB) AppendArchive(ctx context.Context, msgs []archive.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	chunks := chunksOf(msgs)
	// Every row's data, packed once (a retried transaction reuses it) into
	// one arena.
	data := make([][]byte, len(chunks))
	var arena, scratch []byte
	for i, c := range chunks {
		at := len(arena)
		arena = packChunk(arena, &scratch, c.msgs)
		data[i] = arena[at:len(arena):len(arena)]
	}
	// Slices taken before the arena grew point into its old array, which
	// stays valid: nothing writes there again.
	err := db.b.inTx(ctx, func(q querier) error {
		for from := 0; from < len(chunks); {
			n := min(len(chunks)-from, archiveRowsPerInsert)
			var sb strings.Builder
			sb.WriteString(insertChunk)
			args := make([]any, 0, 6*n)
			for i, c := range chunks[from : from+n] {
				if i > 0 {
					sb.WriteString(", (?, ?, ?, ?, ?, ?)")
				}
				args = append(args, c.owner, c.last, c.first, c.with, len(c.msgs), data[from+i])
			}
			sb.WriteString(` ON CONFLICT (owner, last_id) DO NOTHING`)
			if _, err := q.exec(ctx, sb.String(), args...); err != nil {
				return err
			}
			from += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: append to the archive: %w", err)
	}
	return nil
}

// QueryArchive implements archive.Store. It reads the owner's chunks (of
// one party when q.With is set) in last_id order, from the end the query
// starts at, a few per round trip, and stops as soon as the page and the
// one message past it are certain: the last page of a large archive costs
// what the first does.
func (db *DB) QueryArchive(ctx context.Context, q archive.Query) ([]archive.Message, bool, error) {
	if q.Max <= 0 {
		return nil, false, fmt.Errorf("storage: query archive of %s: page size %d", q.Owner, q.Max)
	}
	var (
		found []archive.Message
		err   error
	)
	if len(q.IDs) > 0 {
		found, err = db.archiveByIDs(ctx, q)
	} else {
		found, err = db.archiveScan(ctx, q)
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: query archive of %s: %w", q.Owner, err)
	}
	slices.SortFunc(found, func(a, b archive.Message) int { return cmp.Compare(a.ID, b.ID) })
	// A batch retried after a commit whose answer was lost may have been
	// cut into other chunks: a message counts once.
	found = slices.CompactFunc(found, func(a, b archive.Message) bool { return a.ID == b.ID })
	more := len(found) > q.Max
	if more {
		if q.Last {
			found = found[len(found)-q.Max:]
		} else {
			found = found[:q.Max]
		}
	}
	return found, more, nil
}

// selects reports whether q selects m: its bounds, resource and ids (the
// owner and party are the SQL's).
func selects(q archive.Query, m archive.Message) bool {
	return (q.After <= 0 || m.ID > q.After) && (q.Before <= 0 || m.ID < q.Before) &&
		(q.WithResource == "" || m.WithResource == q.WithResource) &&
		(len(q.IDs) == 0 || slices.Contains(q.IDs, m.ID))
}

// chunkRow is a chunk as read.
type chunkRow struct {
	last, first int64
	with        string
	data        []byte
}

// selected appends to found the messages of c that q selects.
func (c chunkRow) selected(q archive.Query, found []archive.Message) ([]archive.Message, error) {
	msgs, err := decodeChunk(q.Owner, c.with, c.first, c.data)
	if err != nil {
		return found, err
	}
	for _, m := range msgs {
		if selects(q, m) {
			found = append(found, m)
		}
	}
	return found, nil
}

func scanChunk(r rows) (c chunkRow, err error) {
	err = r.Scan(&c.last, &c.first, &c.with, &c.data)
	return c, err
}

// archiveScan reads chunks from the end q starts at until the page and
// one message past it are settled: reading backward (q.Last), no unread
// chunk holds an id above the next chunk's last_id; reading forward, none
// holds an id below the next chunk's last_id - chunkMaxSpan.
func (db *DB) archiveScan(ctx context.Context, q archive.Query) ([]archive.Message, error) {
	var sb strings.Builder
	sb.WriteString(`SELECT last_id, first_id, with_jid, data FROM archive_chunks WHERE owner = ?`)
	args := []any{q.Owner}
	if q.With != "" {
		sb.WriteString(` AND with_jid = ?`)
		args = append(args, q.With)
	}
	if q.After > 0 {
		sb.WriteString(` AND last_id > ?`)
		args = append(args, q.After)
	}
	if q.Before > 0 {
		sb.WriteString(` AND first_id < ? AND last_id < ?`)
		args = append(args, q.Before, q.Before+min(chunkMaxSpan, math.MaxInt64-q.Before))
	}
	base := sb.String()
	order := ` ORDER BY last_id LIMIT ?`
	next := ` AND last_id > ?`
	if q.Last {
		order, next = ` ORDER BY last_id DESC LIMIT ?`, ` AND last_id < ?`
	}
	settled := func(found []archive.Message, last int64) int {
		n := 0
		for _, m := range found {
			if q.Last && m.ID > last || !q.Last && m.ID < last-chunkMaxSpan {
				n++
			}
		}
		return n
	}
	var found []archive.Message
	query, qargs := base+order, append(slices.Clone(args), chunksPerRead)
	for {
		r, err := db.b.query(ctx, query, qargs...)
		read, err := collect(r, err, scanChunk)
		if err != nil {
			return nil, err
		}
		for _, c := range read {
			if settled(found, c.last) > q.Max {
				return found, nil
			}
			if found, err = c.selected(q, found); err != nil {
				return nil, err
			}
		}
		if len(read) < chunksPerRead {
			return found, nil
		}
		query, qargs = base+next+order, append(slices.Clone(args), read[len(read)-1].last, chunksPerRead)
	}
}

// idsPerQuery bounds the ids one statement looks up.
const idsPerQuery = 100

// archiveByIDs reads the chunks that can hold q.IDs: a chunk holding id
// has its last_id in id..id+chunkMaxSpan.
func (db *DB) archiveByIDs(ctx context.Context, q archive.Query) ([]archive.Message, error) {
	var found []archive.Message
	for ids := q.IDs; len(ids) > 0; {
		n := min(len(ids), idsPerQuery)
		var sb strings.Builder
		sb.WriteString(`SELECT last_id, first_id, with_jid, data FROM archive_chunks WHERE owner = ?`)
		args := []any{q.Owner}
		if q.With != "" {
			sb.WriteString(` AND with_jid = ?`)
			args = append(args, q.With)
		}
		for i, id := range ids[:n] {
			if i == 0 {
				sb.WriteString(` AND (`)
			} else {
				sb.WriteString(` OR `)
			}
			sb.WriteString(`last_id BETWEEN ? AND ? AND first_id <= ?`)
			args = append(args, id, id+min(chunkMaxSpan, math.MaxInt64-id), id)
		}
		sb.WriteString(`)`)
		ids = ids[n:]
		r, err := db.b.query(ctx, sb.String(), args...)
		read, err := collect(r, err, scanChunk)
		if err != nil {
			return nil, err
		}
		for _, c := range read {
			if found, err = c.selected(q, found); err != nil {
				return nil, err
			}
		}
	}
	return found, nil
}

// LastArchiveID implements archive.Store.
func (db *DB) LastArchiveID(ctx context.Context) (int64, error) {
	var id int64
	if err := db.b.queryRow(ctx, `SELECT COALESCE(MAX(last_id), 0) FROM archive_chunks`, nil, &id); err != nil {
		return 0, fmt.Errorf("storage: last archive id: %w", err)
	}
	return id, nil
}

// DeleteArchiveBefore implements archive.Store: it removes up to limit
// chunks that lie wholly below id, through the index on last_id; when
// fewer were left, it also trims the chunks that straddle id.
func (db *DB) DeleteArchiveBefore(ctx context.Context, id int64, limit int) (int64, error) {
	var removed int64
	err := db.b.inTx(ctx, func(q querier) error {
		removed = 0
		r, err := q.query(ctx, `SELECT last_id, n FROM archive_chunks WHERE last_id < ? ORDER BY last_id LIMIT ?`, id, limit)
		whole, err := collect(r, err, func(r rows) (c [2]int64, err error) {
			err = r.Scan(&c[0], &c[1])
			return c, err
		})
		if err != nil {
			return err
		}
		if len(whole) > 0 {
			upTo := whole[len(whole)-1][0]
			if err := q.queryRow(ctx, `SELECT COALESCE(SUM(n), 0) FROM archive_chunks WHERE last_id <= ?`, []any{upTo}, &removed); err != nil {
				return err
			}
			if _, err := q.exec(ctx, `DELETE FROM archive_chunks WHERE last_id <= ?`, upTo); err != nil {
				return err
			}
		}
		if len(whole) == limit {
			return nil
		}
		r, err = q.query(ctx, `SELECT owner, last_id, first_id, with_jid, data FROM archive_chunks
			WHERE last_id >= ? AND last_id <= ? AND first_id < ?`, id, id+min(chunkMaxSpan, math.MaxInt64-id), id)
		type straddling struct {
			owner string
			c     chunkRow
		}
		cut, err := collect(r, err, func(r rows) (s straddling, err error) {
			err = r.Scan(&s.owner, &s.c.last, &s.c.first, &s.c.with, &s.c.data)
			return s, err
		})
		if err != nil {
			return err
		}
		for _, s := range cut {
			msgs, err := decodeChunk(s.owner, s.c.with, s.c.first, s.c.data)
			if err != nil {
				return err
			}
			keep := slices.DeleteFunc(msgs, func(m archive.Message) bool { return m.ID < id })
			removed += int64(len(msgs) - len(keep))
			if _, err := q.exec(ctx, `UPDATE archive_chunks SET first_id = ?, n = ?, data = ? WHERE owner = ? AND last_id = ?`,
				keep[0].ID, len(keep), packChunk(nil, new([]byte), keep), s.owner, s.c.last); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: expire archive: %w", err)
	}
	return removed, nil
}

// ArchivePrefs implements archive.Store.
func (db *DB) ArchivePrefs(ctx context.Context, owner string) (archive.Prefs, error) {
	var def, always, never string
	err := db.b.queryRow(ctx, `SELECT default_mode, always_json, never_json FROM archive_prefs WHERE owner = ?`,
		[]any{owner}, &def, &always, &never)
	if err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return archive.Prefs{Default: archive.Always}, nil
		}
		return archive.Prefs{}, fmt.Errorf("storage: archive preferences of %s: %w", owner, err)
	}
	p := archive.Prefs{Default: def}
	if err := json.Unmarshal([]byte(always), &p.Always); err != nil {
		return archive.Prefs{}, fmt.Errorf("storage: archive preferences of %s: %w", owner, err)
	}
	if err := json.Unmarshal([]byte(never), &p.Never); err != nil {
		return archive.Prefs{}, fmt.Errorf("storage: archive preferences of %s: %w", owner, err)
	}
	return p, nil
}

// SetArchivePrefs implements archive.Store.
func (db *DB) SetArchivePrefs(ctx context.Context, owner string, p archive.Prefs) error {
	always, _ := json.Marshal(orEmpty(p.Always))
	never, _ := json.Marshal(orEmpty(p.Never))
	_, err := db.b.exec(ctx, `INSERT INTO archive_prefs (owner, default_mode, always_json, never_json) VALUES (?, ?, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET default_mode = excluded.default_mode,
			always_json = excluded.always_json, never_json = excluded.never_json`,
		owner, p.Default, string(always), string(never))
	if err != nil {
		return fmt.Errorf("storage: set archive preferences of %s: %w", owner, err)
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// chunkArchive moves the rows of the archive as it was before migration
// 16 (a row per message) into chunks, a page at a time, and drops the old
// table.
func chunkArchive(ctx context.Context, q querier) error {
	const page = 10_000
	owner, id := "", int64(0)
	for {
		r, err := q.query(ctx, `SELECT owner, id, with_jid, with_resource, stanza FROM archive
			WHERE owner > ? OR owner = ? AND id > ? ORDER BY owner, id LIMIT ?`, owner, owner, id, page)
		msgs, err := collect(r, err, func(r rows) (m archive.Message, err error) {
			err = r.Scan(&m.Owner, &m.ID, &m.With, &m.WithResource, &m.Stanza)
			return m, err
		})
		if err != nil {
			return err
		}
		for _, c := range chunksOf(msgs) {
			if _, err := q.exec(ctx, insertChunk+` ON CONFLICT (owner, last_id) DO NOTHING`,
				c.owner, c.last, c.first, c.with, len(c.msgs), packChunk(nil, new([]byte), c.msgs)); err != nil {
				return err
			}
		}
		if len(msgs) < page {
			break
		}
		owner, id = msgs[len(msgs)-1].Owner, msgs[len(msgs)-1].ID
	}
	_, err := q.exec(ctx, `DROP TABLE archive`)
	return err
}
