package storage

import (
	"context"
	"errors"
	"fmt"
	"math"

	"dialtone/auth"
	"dialtone/groups"
	"dialtone/sms"
)

var _ groups.Store = (*DB)(nil)

// MUCRooms returns every stored room.
func (db *DB) MUCRooms(ctx context.Context) ([]groups.Room, error) {
	r, err := db.b.query(ctx, `SELECT jid, config, subject, subject_by, vcard, created FROM muc_rooms ORDER BY jid`)
	rooms, err := collect(r, err, func(r rows) (g groups.Room, err error) {
		err = r.Scan(&g.JID, &g.Config, &g.Subject, &g.SubjectBy, &g.VCard, timeCol{&g.Created})
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: group rooms: %w", err)
	}
	return rooms, nil
}

// PutMUCRoom stores (replaces) a room.
func (db *DB) PutMUCRoom(ctx context.Context, g groups.Room) error {
	created := g.Created
	if created.IsZero() {
		created = db.stamp()
	}
	var vcard any // NULL: none
	if len(g.VCard) > 0 {
		vcard = g.VCard
	}
	if g.Config == nil {
		g.Config = []byte{}
	}
	if _, err := db.b.exec(ctx, `INSERT INTO muc_rooms (jid, config, subject, subject_by, vcard, created)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (jid) DO UPDATE SET config = excluded.config, subject = excluded.subject,
			subject_by = excluded.subject_by, vcard = excluded.vcard`,
		g.JID, g.Config, g.Subject, g.SubjectBy, vcard, created); err != nil {
		return fmt.Errorf("storage: put group room %s: %w", g.JID, err)
	}
	return nil
}

// DeleteMUCRoom removes a room with its affiliations, archive and the
// invitations to it.
func (db *DB) DeleteMUCRoom(ctx context.Context, room string) error {
	err := db.b.inTx(ctx, func(q querier) error {
		for _, stmt := range []string{
			`DELETE FROM muc_rooms WHERE jid = ?`,
			`DELETE FROM muc_affiliations WHERE room = ?`,
			`DELETE FROM muc_archive WHERE room = ?`,
			`DELETE FROM muc_invitations WHERE room = ?`,
		} {
			if _, err := q.exec(ctx, stmt, room); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: delete group room %s: %w", room, err)
	}
	return nil
}

// MUCAffiliations returns the affiliations of every stored room.
func (db *DB) MUCAffiliations(ctx context.Context) ([]groups.Affiliation, error) {
	r, err := db.b.query(ctx, `SELECT room, jid, affiliation, nick, reason, owner FROM muc_affiliations ORDER BY room, jid`)
	affs, err := collect(r, err, func(r rows) (a groups.Affiliation, err error) {
		err = r.Scan(&a.Room, &a.JID, &a.Affiliation, &a.Nick, &a.Reason, &a.Owner)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: group affiliations: %w", err)
	}
	return affs, nil
}

// SetMUCAffiliation stores a user's affiliation; none removes it.
func (db *DB) SetMUCAffiliation(ctx context.Context, a groups.Affiliation) error {
	var err error
	if a.Affiliation == "" || a.Affiliation == "none" {
		_, err = db.b.exec(ctx, `DELETE FROM muc_affiliations WHERE room = ? AND jid = ?`, a.Room, a.JID)
	} else {
		_, err = db.b.exec(ctx, `INSERT INTO muc_affiliations (room, jid, affiliation, nick, reason, owner) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (room, jid) DO UPDATE SET affiliation = excluded.affiliation, nick = excluded.nick, reason = excluded.reason, owner = excluded.owner`,
			a.Room, a.JID, a.Affiliation, a.Nick, a.Reason, a.Owner)
	}
	if err != nil {
		return fmt.Errorf("storage: affiliation of %s in %s: %w", a.JID, a.Room, err)
	}
	return nil
}

// AppendMUCArchive archives messages in order, in one transaction (a
// batch of the group archive's writer: one commit for many messages).
func (db *DB) AppendMUCArchive(ctx context.Context, msgs []groups.Message) error {
	err := db.b.inTx(ctx, func(q querier) error {
		for _, m := range msgs {
			stamp := m.Stamp
			if stamp.IsZero() {
				stamp = db.stamp()
			}
			if _, err := q.exec(ctx, `INSERT INTO muc_archive (room, id, stamp, nick, sender, stanza) VALUES (?, ?, ?, ?, ?, ?)`,
				m.Room, m.ID, stamp, m.Nick, m.Sender, m.Stanza); err != nil {
				return fmt.Errorf("%s in %s: %w", m.ID, m.Room, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: archive group messages: %w", err)
	}
	return nil
}

// archiveSeq returns the position of the message id in room.
func (db *DB) archiveSeq(ctx context.Context, room, id string) (int64, error) {
	var seq int64
	err := db.b.queryRow(ctx, `SELECT seq FROM muc_archive WHERE room = ? AND id = ?`, []any{room, id}, &seq)
	if errors.Is(err, auth.ErrNotFound) {
		return 0, groups.ErrUnknownID
	}
	return seq, err
}

// MUCArchive returns the messages of room that q selects, oldest first,
// and whether no more lie beyond the page in its direction.
func (db *DB) MUCArchive(ctx context.Context, room string, q groups.Query) ([]groups.Message, bool, error) {
	where, args := `room = ?`, []any{room}
	if !q.Start.IsZero() {
		where, args = where+` AND stamp >= ?`, append(args, q.Start)
	}
	if !q.End.IsZero() {
		where, args = where+` AND stamp <= ?`, append(args, q.End)
	}
	if q.Nick != "" {
		where, args = where+` AND nick = ?`, append(args, q.Nick)
	}
	if q.Sender != "" {
		where, args = where+` AND sender = ?`, append(args, q.Sender)
	}
	for _, b := range []struct {
		id, op string
	}{{q.AfterID, ">"}, {q.BeforeID, "<"}} {
		if b.id == "" {
			continue
		}
		seq, err := db.archiveSeq(ctx, room, b.id)
		if err != nil {
			return nil, false, fmt.Errorf("storage: group archive of %s: %w", room, err)
		}
		where, args = where+` AND seq `+b.op+` ?`, append(args, seq)
	}
	order := "ASC"
	if q.Last {
		order = "DESC"
	}
	limit := int64(math.MaxInt64)
	if q.Max > 0 {
		limit = int64(q.Max) + 1 // one more tells whether the page is the last
	}
	r, err := db.b.query(ctx, `SELECT id, stamp, nick, sender, stanza FROM muc_archive WHERE `+where+
		` ORDER BY seq `+order+` LIMIT ?`, append(args, limit)...)
	msgs, err := collect(r, err, func(r rows) (m groups.Message, err error) {
		m.Room = room
		err = r.Scan(&m.ID, timeCol{&m.Stamp}, &m.Nick, &m.Sender, &m.Stanza)
		return m, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("storage: group archive of %s: %w", room, err)
	}
	complete := true
	if q.Max > 0 && len(msgs) > q.Max {
		msgs, complete = msgs[:q.Max], false
	}
	if q.Last {
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	return msgs, complete, nil
}

// StoreInvitation keeps an invitation for a number together with what its
// notice plan writes (the account made, the SMS queued), in one
// transaction; sms.ErrStale when the account changed since the plan.
func (db *DB) StoreInvitation(ctx context.Context, inv groups.Invitation, plan sms.NoticePlan) error {
	at := plan.At
	if at.IsZero() {
		at = db.stamp()
	}
	if inv.Stamp.IsZero() {
		inv.Stamp = at
	}
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO muc_invitations (owner, room, inviter, reason, password, stamp) VALUES (?, ?, ?, ?, ?, ?)`,
			inv.Invitee, inv.Room, inv.Inviter, inv.Reason, inv.Password, inv.Stamp); err != nil {
			return err
		}
		return applyNoticePlan(ctx, q, inv.Invitee, at, plan)
	})
	if err != nil {
		return fmt.Errorf("storage: keep invitation for %s: %w", inv.Invitee, err)
	}
	return nil
}

// MUCInvitations returns the invitations kept for a number, oldest first.
func (db *DB) MUCInvitations(ctx context.Context, invitee string) ([]groups.Invitation, error) {
	r, err := db.b.query(ctx, `SELECT room, inviter, reason, password, stamp FROM muc_invitations WHERE owner = ? ORDER BY seq`, invitee)
	invs, err := collect(r, err, func(r rows) (inv groups.Invitation, err error) {
		inv.Invitee = invitee
		err = r.Scan(&inv.Room, &inv.Inviter, &inv.Reason, &inv.Password, timeCol{&inv.Stamp})
		return inv, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: invitations of %s: %w", invitee, err)
	}
	return invs, nil
}

// DeleteMUCInvitations removes the invitations kept for a number.
func (db *DB) DeleteMUCInvitations(ctx context.Context, invitee string) error {
	if _, err := db.b.exec(ctx, `DELETE FROM muc_invitations WHERE owner = ?`, invitee); err != nil {
		return fmt.Errorf("storage: delete invitations of %s: %w", invitee, err)
	}
	return nil
}
