package storage

import (
	"context"
	"fmt"
	"time"
)

// migration is one step of the schema. Steps are append-only: a released
// step is never edited or reordered, because databases in the field have it
// recorded as done. Statements use the type tokens {{id}} (an increasing
// primary key that is never reused), {{key}} (text compared byte by byte,
// for numbers, JIDs and keys), {{bytes}} and {{time}}, which the backend
// rewrites; everything else must mean the same in both dialects.
type migration struct {
	version int
	name    string
	stmts   []string
}

// conversions run after the statements of the migration of their version,
// in the same transaction: data that SQL common to both dialects cannot
// rewrite.
var conversions = map[int]func(ctx context.Context, q querier) error{
	16: chunkArchive,
}

// migrations is the schema's history, oldest first, versions 1, 2, 3, …
var migrations = []migration{
	{1, "initial schema", []string{
		`CREATE TABLE accounts (
			number {{key}} PRIMARY KEY,
			state TEXT NOT NULL,
			created {{time}} NOT NULL,
			last_login {{time}},
			generation BIGINT NOT NULL,
			sha1_salt {{bytes}},
			sha1_iterations INTEGER NOT NULL,
			sha1_stored_key {{bytes}},
			sha1_server_key {{bytes}},
			sha256_salt {{bytes}},
			sha256_iterations INTEGER NOT NULL,
			sha256_stored_key {{bytes}},
			sha256_server_key {{bytes}}
		)`,
		// The unclaimed-account sweeper lists by state.
		`CREATE INDEX accounts_state ON accounts (state, number)`,
		`CREATE TABLE roster_items (
			owner {{key}} NOT NULL,
			contact {{key}} NOT NULL,
			name TEXT NOT NULL,
			subscription TEXT NOT NULL,
			pending_out BOOLEAN NOT NULL,
			pending_in BOOLEAN NOT NULL,
			approved BOOLEAN NOT NULL,
			in_roster BOOLEAN NOT NULL,
			groups_json TEXT NOT NULL,
			PRIMARY KEY (owner, contact)
		)`,
		`CREATE TABLE roster_versions (
			owner {{key}} PRIMARY KEY,
			version BIGINT NOT NULL
		)`,
		`CREATE TABLE private_xml (
			owner {{key}} NOT NULL,
			key {{key}} NOT NULL,
			data {{bytes}} NOT NULL,
			PRIMARY KEY (owner, key)
		)`,
		`CREATE TABLE blocklist (
			owner {{key}} NOT NULL,
			jid {{key}} NOT NULL,
			PRIMARY KEY (owner, jid)
		)`,
		`CREATE TABLE offline_messages (
			id {{id}},
			owner {{key}} NOT NULL,
			sender TEXT NOT NULL,
			stamp {{time}} NOT NULL,
			stanza {{bytes}} NOT NULL
		)`,
		`CREATE INDEX offline_messages_owner_id ON offline_messages (owner, id)`,
	}},
	{2, "account lifecycle and SMS outbox", []string{
		// touched: the last password SMS or message for an unclaimed
		// account; the sweeper releases unclaimed accounts touched before
		// now - XMPPD_UNCLAIMED_ACCOUNT_TTL, through this index.
		`ALTER TABLE accounts ADD COLUMN touched {{time}}`,
		`CREATE INDEX accounts_unclaimed_touched ON accounts (state, touched)`,
		// The durable outbox: one row per SMS (or call) not yet accepted
		// by the gateway. body is sealed (encrypted with the secret key)
		// when it carries a password.
		`CREATE TABLE sms_outbox (
			id {{key}} PRIMARY KEY,
			recipient {{key}} NOT NULL,
			purpose TEXT NOT NULL,
			voice BOOLEAN NOT NULL,
			sealed BOOLEAN NOT NULL,
			body {{bytes}} NOT NULL,
			created {{time}} NOT NULL,
			attempts INTEGER NOT NULL,
			next_attempt {{time}} NOT NULL,
			last_error TEXT NOT NULL
		)`,
		`CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt)`,
		// What was queued for each number, for the per-number caps; rows
		// older than two days are pruned.
		`CREATE TABLE sms_log (
			seq {{id}},
			recipient {{key}} NOT NULL,
			purpose TEXT NOT NULL,
			queued {{time}} NOT NULL
		)`,
		`CREATE INDEX sms_log_recipient ON sms_log (recipient, purpose, queued)`,
	}},
	{3, "message notices", []string{
		// password_noticed: when a notice carried a fresh password to this
		// unclaimed account; later notices to it carry none.
		`ALTER TABLE accounts ADD COLUMN password_noticed {{time}}`,
		// One open notice window per receiver: the messages stored since
		// its notice, folded into one notice when it closes. sender is the
		// one sender of the counted messages, '' when several wrote.
		`CREATE TABLE notice_windows (
			owner {{key}} PRIMARY KEY,
			opened {{time}} NOT NULL,
			closes {{time}} NOT NULL,
			messages INTEGER NOT NULL,
			sender TEXT NOT NULL
		)`,
		// The scheduler takes the windows due, earliest first.
		`CREATE INDEX notice_windows_closes ON notice_windows (closes)`,
		// The never-claimed numbers each sender (a local number, or a
		// remote domain) caused notices to, for
		// XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY; rows older than a day
		// are pruned.
		`CREATE TABLE notice_new_numbers (
			sender {{key}} NOT NULL,
			number {{key}} NOT NULL,
			noticed {{time}} NOT NULL,
			PRIMARY KEY (sender, number)
		)`,
		`CREATE INDEX notice_new_numbers_noticed ON notice_new_numbers (noticed)`,
	}},
	{4, "delivered and pending passwords, new numbers per sender", []string{
		// password_delivered: when a password of the account was first
		// given to anyone (texted, printed by xmppctl); from then on no
		// notice replaces it. Accounts from before are taken as
		// delivered, since a printed password left no trace. From here
		// on password_noticed is when the first notice went out, with a
		// password or, the password delivered already, without.
		`ALTER TABLE accounts ADD COLUMN password_delivered {{time}}`,
		`UPDATE accounts SET password_delivered = COALESCE(password_noticed, touched, created)`,
		// The keys of a password texted on request that has not logged
		// in yet; salts and iteration counts are those of the current
		// keys. NULL: none pending.
		`ALTER TABLE accounts ADD COLUMN pending_sha1_stored_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN pending_sha1_server_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN pending_sha256_stored_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN pending_sha256_server_key {{bytes}}`,
		// The never-logged-in numbers each sender (a local number, or a
		// remote registrable domain) left messages for, for
		// XMPPD_NEW_NUMBERS_PER_SENDER_DAY; rows older than a day are
		// pruned.
		`CREATE TABLE stored_new_numbers (
			sender {{key}} NOT NULL,
			number {{key}} NOT NULL,
			stored {{time}} NOT NULL,
			PRIMARY KEY (sender, number)
		)`,
		`CREATE INDEX stored_new_numbers_stored ON stored_new_numbers (stored)`,
	}},
	{5, "app API PINs", []string{
		// The PIN texted to a number for the app API (SPEC.md "App
		// API"), one per number: hash is its HMAC under the secret key
		// (auth.PINHash), tries the wrong ones so far. Not owned by an
		// account: latent numbers get PINs too. Expired rows are
		// deleted as new PINs are saved.
		`CREATE TABLE pins (
			number {{key}} PRIMARY KEY,
			hash {{bytes}} NOT NULL,
			expires {{time}} NOT NULL,
			tries INTEGER NOT NULL
		)`,
		`CREATE INDEX pins_expires ON pins (expires)`,
	}},
	{6, "HTTP file uploads", []string{
		// One row per upload slot (XEP-0363): reserved at the slot
		// request, stored once its PUT completed (stored NULL until
		// then). The quota sums size per owner; the sweeper removes by
		// stored time and, for slots never stored, by put_expires.
		`CREATE TABLE uploads (
			id {{key}} PRIMARY KEY,
			owner {{key}} NOT NULL,
			name TEXT NOT NULL,
			size BIGINT NOT NULL,
			content_type TEXT NOT NULL,
			created {{time}} NOT NULL,
			put_expires {{time}} NOT NULL,
			stored {{time}}
		)`,
		`CREATE INDEX uploads_owner ON uploads (owner)`,
		`CREATE INDEX uploads_stored ON uploads (stored)`,
		`CREATE INDEX uploads_put_expires ON uploads (put_expires)`,
	}},
	{7, "one-tap login links and web client tickets", []string{
		// The links of password SMS (SPEC.md "Web client and one-tap
		// login"): the SHA-256 of the token, never the token; the tag of
		// the password texted with it; used once a browser logged in
		// with it. Rows are kept a week past their expiry, to tell an
		// expired link from an unknown one, then pruned.
		`CREATE TABLE login_links (
			token_hash {{key}} PRIMARY KEY,
			owner {{key}} NOT NULL,
			password_tag {{bytes}} NOT NULL,
			created {{time}} NOT NULL,
			expires {{time}} NOT NULL,
			used {{time}}
		)`,
		`CREATE INDEX login_links_expires ON login_links (expires)`,
		`CREATE INDEX login_links_owner ON login_links (owner)`,
		// Single-use logins of the web client: SCRAM keys of a random
		// secret, salted as the owner's password at generation.
		`CREATE TABLE web_tickets (
			id {{key}} PRIMARY KEY,
			owner {{key}} NOT NULL,
			generation BIGINT NOT NULL,
			sha1_stored_key {{bytes}} NOT NULL,
			sha1_server_key {{bytes}} NOT NULL,
			sha256_stored_key {{bytes}} NOT NULL,
			sha256_server_key {{bytes}} NOT NULL,
			expires {{time}} NOT NULL
		)`,
		`CREATE INDEX web_tickets_owner ON web_tickets (owner, expires)`,
		`CREATE INDEX web_tickets_expires ON web_tickets (expires)`,
	}},
	{8, "personal eventing (PEP) nodes and items", []string{
		// One row per node of an account's PEP service (XEP-0163):
		// config is pubsub.Config.Encode.
		`CREATE TABLE pep_nodes (
			owner {{key}} NOT NULL,
			node {{key}} NOT NULL,
			config TEXT NOT NULL,
			PRIMARY KEY (owner, node)
		)`,
		// The items of each node; seq orders them (higher is newer) and
		// is one more than the node's highest at each publish.
		`CREATE TABLE pep_items (
			owner {{key}} NOT NULL,
			node {{key}} NOT NULL,
			id {{key}} NOT NULL,
			seq BIGINT NOT NULL,
			payload {{bytes}} NOT NULL,
			PRIMARY KEY (owner, node, id)
		)`,
		`CREATE INDEX pep_items_seq ON pep_items (owner, node, seq)`,
	}},
	{9, "contact discovery opt-out", []string{
		// An account that opted out of contact discovery (SPEC.md "App
		// API"): the phone-book query never names it. Only this flag is
		// stored; phone books never are.
		`ALTER TABLE accounts ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE`,
	}},
	{10, "SCRAM-SHA-512 keys", []string{
		// SCRAM-SHA-512 keys of the password, NULL for passwords set
		// before they were kept (auth.Credentials.SHA512): SHA-512 is
		// offered only once no account lacks them (DB.AccountsWithoutSHA512).
		// The pending ones share the salt and iteration count.
		`ALTER TABLE accounts ADD COLUMN sha512_salt {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN sha512_iterations INTEGER`,
		`ALTER TABLE accounts ADD COLUMN sha512_stored_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN sha512_server_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN pending_sha512_stored_key {{bytes}}`,
		`ALTER TABLE accounts ADD COLUMN pending_sha512_server_key {{bytes}}`,
		`ALTER TABLE web_tickets ADD COLUMN sha512_stored_key {{bytes}}`,
		`ALTER TABLE web_tickets ADD COLUMN sha512_server_key {{bytes}}`,
	}},
	{11, "FAST tokens", []string{
		// XEP-0484 tokens: the id from which the server secret derives
		// the token (never the token), per account and client
		// (user_agent, the SASL2 user-agent id), valid at generation
		// only. Expired rows go as new tokens are added.
		`CREATE TABLE fast_tokens (
			id {{key}} PRIMARY KEY,
			owner {{key}} NOT NULL,
			user_agent TEXT NOT NULL,
			generation BIGINT NOT NULL,
			created {{time}} NOT NULL,
			expires {{time}} NOT NULL
		)`,
		`CREATE INDEX fast_tokens_owner ON fast_tokens (owner, user_agent)`,
		`CREATE INDEX fast_tokens_expires ON fast_tokens (expires)`,
	}},
	{12, "group chats", []string{
		// Persistent rooms (XEP-0045 at groups.DOMAIN): the configuration
		// is the module's JSON, kept as it is.
		`CREATE TABLE muc_rooms (
			jid {{key}} PRIMARY KEY,
			config {{bytes}} NOT NULL,
			subject TEXT NOT NULL,
			subject_by TEXT NOT NULL,
			vcard {{bytes}},
			created {{time}} NOT NULL
		)`,
		`CREATE TABLE muc_affiliations (
			room {{key}} NOT NULL,
			jid {{key}} NOT NULL,
			affiliation TEXT NOT NULL,
			nick TEXT NOT NULL,
			reason TEXT NOT NULL,
			PRIMARY KEY (room, jid)
		)`,
		// The room archive (MAM on the room): seq orders it, id is the
		// stanza-id clients page by.
		`CREATE TABLE muc_archive (
			seq {{id}},
			room {{key}} NOT NULL,
			id {{key}} NOT NULL,
			stamp {{time}} NOT NULL,
			nick TEXT NOT NULL,
			sender {{key}} NOT NULL,
			stanza {{bytes}} NOT NULL
		)`,
		`CREATE UNIQUE INDEX muc_archive_id ON muc_archive (room, id)`,
		`CREATE INDEX muc_archive_stamp ON muc_archive (room, stamp)`,
		// Invitations kept for a number until it logs in (owner: the
		// invitee's number, so that they go with the account).
		`CREATE TABLE muc_invitations (
			seq {{id}},
			owner {{key}} NOT NULL,
			room {{key}} NOT NULL,
			inviter {{key}} NOT NULL,
			reason TEXT NOT NULL,
			password TEXT NOT NULL,
			stamp {{time}} NOT NULL
		)`,
		`CREATE INDEX muc_invitations_owner ON muc_invitations (owner, seq)`,
	}},
	{13, "message archive and push registrations", []string{
		// The message archive (XEP-0313): one row per message per account
		// involved. id is the archive id (package archive): the stanza-id,
		// the paging cursor and the time, so every query is a range over
		// one of the two composite indexes, newest page included (a
		// backward scan). with_jid is the other party's bare JID.
		`CREATE TABLE archive (
			owner {{key}} NOT NULL,
			id BIGINT NOT NULL,
			with_jid {{key}} NOT NULL,
			with_resource TEXT NOT NULL,
			stanza {{bytes}} NOT NULL,
			PRIMARY KEY (owner, id)
		)`,
		`CREATE INDEX archive_owner_with ON archive (owner, with_jid, id)`,
		// The retention sweep removes by id (time) across owners.
		`CREATE INDEX archive_id ON archive (id)`,
		// Archiving preferences; no row: the default (always).
		`CREATE TABLE archive_prefs (
			owner {{key}} PRIMARY KEY,
			default_mode TEXT NOT NULL,
			always_json TEXT NOT NULL,
			never_json TEXT NOT NULL
		)`,
		// XEP-0357 registrations: the app server (jid), its node, and the
		// publish-options form as it was sent.
		`CREATE TABLE push_registrations (
			owner {{key}} NOT NULL,
			jid {{key}} NOT NULL,
			node {{key}} NOT NULL,
			options {{bytes}} NOT NULL,
			PRIMARY KEY (owner, jid, node)
		)`,
	}},
	{14, "PEP subscriptions", []string{
		// Explicit XEP-0060 subscriptions to an account's PEP nodes
		// (owner: the account; subscriber: a JID as the client gave it).
		`CREATE TABLE pep_subscriptions (
			owner {{key}} NOT NULL,
			node {{key}} NOT NULL,
			subscriber {{key}} NOT NULL,
			PRIMARY KEY (owner, node, subscriber)
		)`,
	}},
	{15, "group affiliations owned by the account", []string{
		// The local number of the affiliated JID ('' for a remote one),
		// so that a recycled, released or deleted number's memberships go
		// with its account (ownedTables). The group module fills it in
		// for the rows stored before, when it loads them.
		`ALTER TABLE muc_affiliations ADD COLUMN owner {{key}} NOT NULL DEFAULT ''`,
		`CREATE INDEX muc_affiliations_owner ON muc_affiliations (owner)`,
	}},
	{16, "message archive in chunks", []string{
		// The archive in chunks (storage/archive.go): a row per owner, party
		// and write batch, so that a busy server writes a row per
		// conversation and batch instead of one per message. Chunks are read
		// in last_id order, per owner or per owner and party; the retention
		// sweep goes by last_id across owners.
		`CREATE TABLE archive_chunks (
			owner {{key}} NOT NULL,
			last_id BIGINT NOT NULL,
			first_id BIGINT NOT NULL,
			with_jid {{key}} NOT NULL,
			n INTEGER NOT NULL,
			data {{bytes}} NOT NULL,
			PRIMARY KEY (owner, last_id)
		)`,
		`CREATE INDEX archive_chunks_with ON archive_chunks (owner, with_jid, last_id)`,
		`CREATE INDEX archive_chunks_last ON archive_chunks (last_id)`,
	}},
	{17, "limits and secrets shared by the nodes of a cluster", []string{
		// One row per limit key (login lockouts, password request
		// windows): the limit's own state, the end of a lock every node
		// polls (held_until), and when the row can go.
		`CREATE TABLE shared_limits (
			kind {{key}} NOT NULL,
			key {{key}} NOT NULL,
			state {{bytes}} NOT NULL,
			held_until {{time}},
			expires {{time}} NOT NULL,
			PRIMARY KEY (kind, key)
		)`,
		`CREATE INDEX shared_limits_held ON shared_limits (kind, held_until)`,
		`CREATE INDEX shared_limits_expires ON shared_limits (expires)`,
		// Keys made once for the whole cluster by whichever node starts
		// first (XMPPD_SECRET_KEY, XMPPD_S2S_DIALBACK_SECRET when unset).
		`CREATE TABLE shared_secrets (
			name {{key}} PRIMARY KEY,
			value {{bytes}} NOT NULL
		)`,
		// Who claimed an SMS of the outbox (a node's name): a node that
		// starts again sends at once what it claimed before it died.
		`ALTER TABLE sms_outbox ADD COLUMN claimed_by {{key}} NOT NULL DEFAULT ''`,
	}},
}

// ownedTables are the tables with an owner column: what DeleteAccount
// removes besides the account row. A migration that adds such a table adds
// it here too.
var ownedTables = []string{"roster_items", "roster_versions", "private_xml", "blocklist", "offline_messages", "notice_windows",
	// The files on disk go with the rows: the daemon removes them
	// (upload.Service.RemoveOwner), and the upload sweeper removes what
	// has no row any more.
	"uploads",
	"login_links", "web_tickets", "pep_nodes", "pep_items", "fast_tokens",
	"muc_invitations", "archive_chunks", "archive_prefs", "push_registrations", "pep_subscriptions", "muc_affiliations"}

// Migration is one applied schema step, as recorded in schema_migrations.
type Migration struct {
	Version   int
	Name      string
	AppliedAt time.Time
}

// migrate applies the steps not yet recorded, all in one transaction, so a
// failed step leaves the schema as it was. Two processes opening at once
// are serialised by a lock (SQLite: the immediate transaction), and the
// second finds the steps recorded.
func (db *DB) migrate(ctx context.Context) error { return db.migrateSteps(ctx, migrations) }

// migrateSteps is migrate with the given history (tests upgrade from an
// older schema with a prefix of migrations).
func (db *DB) migrateSteps(ctx context.Context, migrations []migration) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if err := db.b.unbounded(ctx, q); err != nil {
			return err
		}
		if err := db.b.lock(ctx, q, "dialtone schema_migrations"); err != nil {
			return err
		}
		if _, err := q.exec(ctx, db.b.ddl(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at {{time}} NOT NULL
		)`)); err != nil {
			return err
		}
		done, err := appliedMigrations(ctx, q)
		if err != nil {
			return err
		}
		applied := make(map[int]bool, len(done))
		for _, m := range done {
			applied[m.Version] = true
		}
		for _, m := range migrations {
			if applied[m.version] {
				continue
			}
			for _, s := range m.stmts {
				if _, err := q.exec(ctx, db.b.ddl(s)); err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if convert := conversions[m.version]; convert != nil {
				if err := convert(ctx, q); err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if _, err := q.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, db.stamp()); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: migrate %s schema: %w", db.b.driver(), err)
	}
	return nil
}

// Migrations lists the applied schema steps, oldest first (for operators,
// and to show that reopening a database does not apply a step again).
func (db *DB) Migrations(ctx context.Context) ([]Migration, error) {
	ms, err := appliedMigrations(ctx, db.b)
	if err != nil {
		return nil, fmt.Errorf("storage: list migrations: %w", err)
	}
	return ms, nil
}

func appliedMigrations(ctx context.Context, q querier) ([]Migration, error) {
	r, err := q.query(ctx, `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	return collect(r, err, func(r rows) (m Migration, err error) {
		err = r.Scan(&m.Version, &m.Name, timeCol{&m.AppliedAt})
		return m, err
	})
}
