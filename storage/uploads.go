package storage

import (
	"context"
	"fmt"
	"time"

	"dialtone/upload"
)

var _ upload.Store = (*DB)(nil)

const uploadColumns = `id, owner, name, size, content_type, created, put_expires, stored`

func scanUpload(r interface{ Scan(...any) error }) (u upload.Record, err error) {
	err = r.Scan(&u.ID, &u.Owner, &u.Name, &u.Size, &u.ContentType, timeCol{&u.Created}, timeCol{&u.PutExpires}, timeCol{&u.Stored})
	return u, err
}

// ReserveUpload records the slot r, not stored yet, unless the owner's
// stored bytes and those of its slots still open at now, plus r.Size,
// exceed quota (<= 0: no quota): then upload.ErrOverQuota. Counting and
// inserting happen under a per-owner lock in one transaction, so
// concurrent requests never exceed the quota together.
func (db *DB) ReserveUpload(ctx context.Context, r upload.Record, quota int64, now time.Time) (used int64, err error) {
	err = db.b.inTx(ctx, func(q querier) error {
		if err := db.b.lock(ctx, q, "dialtone uploads "+r.Owner); err != nil {
			return err
		}
		if err := q.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM uploads
			WHERE owner = ? AND (stored IS NOT NULL OR put_expires > ?)`, []any{r.Owner, now}, &used); err != nil {
			return err
		}
		// Subtracted, not added: a size near the int64 limit must not wrap.
		if quota > 0 && (r.Size > quota || used > quota-r.Size) {
			return upload.ErrOverQuota
		}
		_, err := q.exec(ctx, `INSERT INTO uploads (`+uploadColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)`,
			r.ID, r.Owner, r.Name, r.Size, r.ContentType, r.Created, r.PutExpires)
		return err
	})
	if err != nil {
		return used, fmt.Errorf("storage: reserve upload for %s: %w", r.Owner, err)
	}
	return used, nil
}

// Upload returns the slot id, or upload.ErrNotFound.
func (db *DB) Upload(ctx context.Context, id string) (upload.Record, error) {
	r, err := db.b.query(ctx, `SELECT `+uploadColumns+` FROM uploads WHERE id = ?`, id)
	recs, err := collect(r, err, func(r rows) (upload.Record, error) { return scanUpload(r) })
	if err == nil && len(recs) == 0 {
		err = upload.ErrNotFound
	}
	if err != nil {
		return upload.Record{}, fmt.Errorf("storage: upload %s: %w", id, err)
	}
	return recs[0], nil
}

// CompleteUpload marks the slot id stored at t; upload.ErrNotFound when
// it is gone or stored already.
func (db *DB) CompleteUpload(ctx context.Context, id string, t time.Time) error {
	n, err := db.b.exec(ctx, `UPDATE uploads SET stored = ? WHERE id = ? AND stored IS NULL`, t, id)
	if err == nil && n == 0 {
		err = upload.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: complete upload %s: %w", id, err)
	}
	return nil
}

// ExpireUploads deletes up to batch slots (<= 0: DefaultReleaseBatch):
// stored ones stored before storedBefore (zero: none), and ones never
// stored whose PUT URL expired before reservedBefore. It returns them,
// so that their files can go too.
func (db *DB) ExpireUploads(ctx context.Context, storedBefore, reservedBefore time.Time, batch int) ([]upload.Record, error) {
	if batch <= 0 {
		batch = DefaultReleaseBatch
	}
	var gone []upload.Record
	for _, c := range []struct {
		cond   string
		before time.Time
	}{
		{`stored < ?`, storedBefore},
		{`stored IS NULL AND put_expires < ?`, reservedBefore},
	} {
		if c.before.IsZero() || len(gone) >= batch {
			continue
		}
		r, err := db.b.query(ctx, `DELETE FROM uploads WHERE id IN (
				SELECT id FROM uploads WHERE `+c.cond+` LIMIT ?)
			RETURNING `+uploadColumns, c.before, batch-len(gone))
		recs, err := collect(r, err, func(r rows) (upload.Record, error) { return scanUpload(r) })
		if err != nil {
			return gone, fmt.Errorf("storage: expire uploads: %w", err)
		}
		gone = append(gone, recs...)
	}
	return gone, nil
}

// UploadIDs returns the ids of owner's slots, stored or not.
func (db *DB) UploadIDs(ctx context.Context, owner string) ([]string, error) {
	r, err := db.b.query(ctx, `SELECT id FROM uploads WHERE owner = ?`, owner)
	ids, err := collect(r, err, func(r rows) (id string, err error) {
		err = r.Scan(&id)
		return id, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: uploads of %s: %w", owner, err)
	}
	return ids, nil
}
