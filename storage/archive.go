package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"dialtone/archive"
	"dialtone/auth"
)

var _ archive.Store = (*DB)(nil)

// archiveRowsPerInsert bounds one multi-row INSERT (5 parameters a row:
// far below both engines' limits on parameters).
const archiveRowsPerInsert = 200

// AppendArchive implements archive.Store: the batch in one transaction, a
// multi-row INSERT per archiveRowsPerInsert messages. A message already
// stored (a batch retried after a commit whose answer was lost) is kept
// as it was.
func (db *DB) AppendArchive(ctx context.Context, msgs []archive.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	err := db.b.inTx(ctx, func(q querier) error {
		if c, ok := q.(sqliteConn); ok {
			if tx, ok := c.r.(*sql.Tx); ok {
				return appendPrepared(ctx, tx, msgs)
			}
		}
		for len(msgs) > 0 {
			n := min(len(msgs), archiveRowsPerInsert)
			var sb strings.Builder
			sb.WriteString(`INSERT INTO archive (owner, id, with_jid, with_resource, stanza) VALUES `)
			args := make([]any, 0, 5*n)
			for i, m := range msgs[:n] {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("(?, ?, ?, ?, ?)")
				args = append(args, m.Owner, m.ID, m.With, m.WithResource, stanzaBytes(m))
			}
			sb.WriteString(` ON CONFLICT (owner, id) DO NOTHING`)
			if _, err := q.exec(ctx, sb.String(), args...); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: append to the archive: %w", err)
	}
	return nil
}

// appendPrepared inserts with one statement prepared for the batch: the
// SQLite driver parses the SQL of every Exec, which for a multi-row
// INSERT costs as much as the insert itself.
func appendPrepared(ctx context.Context, tx *sql.Tx, msgs []archive.Message) error {
	st, err := tx.PrepareContext(ctx, `INSERT INTO archive (owner, id, with_jid, with_resource, stanza) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (owner, id) DO NOTHING`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, m := range msgs {
		if _, err := st.ExecContext(ctx, m.Owner, m.ID, m.With, m.WithResource, stanzaBytes(m)); err != nil {
			return err
		}
	}
	return nil
}

// stanzaBytes is m's stanza, never NULL.
func stanzaBytes(m archive.Message) []byte {
	if m.Stanza == nil {
		return []byte{}
	}
	return m.Stanza
}

// QueryArchive implements archive.Store. The conditions make a range of
// (owner, id) or (owner, with_jid, id), read in the query's direction and
// stopped after Max+1 rows: the last page of a large archive costs what
// the first does.
func (db *DB) QueryArchive(ctx context.Context, q archive.Query) ([]archive.Message, bool, error) {
	if q.Max <= 0 {
		return nil, false, fmt.Errorf("storage: query archive of %s: page size %d", q.Owner, q.Max)
	}
	var sb strings.Builder
	sb.WriteString(`SELECT id, with_jid, with_resource, stanza FROM archive WHERE owner = ?`)
	args := []any{q.Owner}
	if q.With != "" {
		sb.WriteString(` AND with_jid = ?`)
		args = append(args, q.With)
		if q.WithResource != "" {
			sb.WriteString(` AND with_resource = ?`)
			args = append(args, q.WithResource)
		}
	}
	if q.After > 0 {
		sb.WriteString(` AND id > ?`)
		args = append(args, q.After)
	}
	if q.Before > 0 {
		sb.WriteString(` AND id < ?`)
		args = append(args, q.Before)
	}
	if len(q.IDs) > 0 {
		sb.WriteString(` AND id IN (?` + strings.Repeat(", ?", len(q.IDs)-1) + `)`)
		for _, id := range q.IDs {
			args = append(args, id)
		}
	}
	if q.Last {
		sb.WriteString(` ORDER BY id DESC LIMIT ?`)
	} else {
		sb.WriteString(` ORDER BY id LIMIT ?`)
	}
	args = append(args, q.Max+1)
	r, err := db.b.query(ctx, sb.String(), args...)
	page, err := collect(r, err, func(r rows) (m archive.Message, err error) {
		m.Owner = q.Owner
		err = r.Scan(&m.ID, &m.With, &m.WithResource, &m.Stanza)
		return m, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("storage: query archive of %s: %w", q.Owner, err)
	}
	more := len(page) > q.Max
	if more {
		page = page[:q.Max]
	}
	if q.Last {
		for i, j := 0, len(page)-1; i < j; i, j = i+1, j-1 {
			page[i], page[j] = page[j], page[i]
		}
	}
	return page, more, nil
}

// LastArchiveID implements archive.Store.
func (db *DB) LastArchiveID(ctx context.Context) (int64, error) {
	var id int64
	if err := db.b.queryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM archive`, nil, &id); err != nil {
		return 0, fmt.Errorf("storage: last archive id: %w", err)
	}
	return id, nil
}

// DeleteArchiveBefore implements archive.Store, through the index on id.
func (db *DB) DeleteArchiveBefore(ctx context.Context, id int64, limit int) (int64, error) {
	n, err := db.b.exec(ctx, `DELETE FROM archive WHERE id IN (SELECT id FROM archive WHERE id < ? ORDER BY id LIMIT ?)`, id, limit)
	if err != nil {
		return 0, fmt.Errorf("storage: expire archive: %w", err)
	}
	return n, nil
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
