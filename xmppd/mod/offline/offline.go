// Package offline is the offline-message module (XEP-0160): it stores the
// messages no session took (router.Undelivered) and delivers them, oldest
// first, when the account becomes available (router.Available), removing
// them only once the receiving client has shown it processed them. The
// message, its store and its rules are package dialtone/offline.
package offline

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// NSDelay is the namespace of XEP-0203 delayed delivery.
const NSDelay = "urn:xmpp:delay"

// Router is what the module needs of the router: writing a stanza to one
// session, asking that session an iq whose answer proves that it took
// everything written to it before, running its deliveries on goroutines
// the router owns, the store deadline. *router.Router is one.
type Router interface {
	Domain() string
	Deliver(full jid.JID, st *router.Stanza) bool
	QuerySession(ctx context.Context, full jid.JID, typ string, payload []byte) (*router.Stanza, error)
	Go(f func(ctx context.Context)) bool
	StoreContext(ctx context.Context) (context.Context, context.CancelFunc)
	// Bounce answers a stanza with an error (RFC 6120 §8.3): a message
	// that a Group failed to keep, after its sender's reader moved on.
	Bounce(st *router.Stanza, err error)
}

// Queue is the module. Set its fields, then load it on the router; the
// deliveries under way stop with the router (Server.Shutdown), and what
// they did not confirm stays stored.
type Queue struct {
	Store    offline.Store
	Accounts interface {
		Account(ctx context.Context, n auth.Number) (auth.Account, error)
	}
	Server Router
	Limit  int // per account; <= 0: no limit
	// Keep, when set, stores each message with its notice, and takes
	// messages to latent numbers (Accounts is then not asked). Nil:
	// Store.PushOffline alone, and a message to a number without an
	// account gets service-unavailable.
	Keep offline.KeepFunc
	// Group, when set, keeps each message as Keep does, in groups of one
	// transaction, off the sender's reader (account.Group.Keep): done is
	// called once the message is committed or failed. The sender's
	// session holds (router.Session.Hold) until then, so the server's
	// answer to its next iq, or a XEP-0198 <a/>, acknowledges only
	// messages that are durable; a failure comes back to the sender as a
	// message error with the original id.
	Group func(ctx context.Context, m offline.Message, s offline.Stored, limit int, done func(offline.Kept, error))
	// Notify, when set, runs the notice rules for a message to an
	// offline receiver that is kept elsewhere (Notice); nil: Notice does
	// nothing.
	Notify func(ctx context.Context, s offline.Stored) error
	Log    *slog.Logger
	Now    func() time.Time
	// AckTimeout is how long a client may take to answer the ping that
	// follows a chunk; then the delivery stops and what it did not
	// confirm is delivered again at the next login. Default 2 minutes.
	AckTimeout time.Duration
}

// Register plugs the queue into the server: it takes the messages no
// session took, delivers them when a session becomes available, and
// advertises msgoffline.
func (q *Queue) Register(h *router.Hooks) error {
	h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
		if q.Group != nil {
			q.storeGrouped(ctx, ev.Stanza, ev.Origin)
			return router.ErrHandled
		}
		if err := q.store(ctx, ev.Stanza); err != nil {
			return err
		}
		return router.ErrHandled
	})
	h.OnSession(router.Available, 0, func(ctx context.Context, s *router.Session) { q.deliver(ctx, s.JID()) })
	h.AddFeature(router.ScopeServer, "msgoffline")
	return nil
}

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

func (q *Queue) log() *slog.Logger {
	if q.Log != nil {
		return q.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// store keeps a message no session took; nil means it was stored or
// dropped on purpose, a stanza.Error goes back to the sender.
func (q *Queue) store(ctx context.Context, m *router.Stanza) error {
	body, hasBody := bodyOf(m)
	if !offline.Keeps(m.Type, hasBody) {
		return nil // not kept, and no error: the sender is not told
	}
	owner := auth.Number(m.To.Localpart())
	sctx, cancel := q.Server.StoreContext(ctx)
	defer cancel()
	if q.Keep == nil {
		if _, err := q.Accounts.Account(sctx, owner); errors.Is(err, auth.ErrNotFound) {
			return router.NewError(stanza.Cancel, stanza.ServiceUnavailable, "")
		} else if err != nil {
			q.log().Error("offline: account lookup failed", "owner", owner, "err", err)
			return router.NewError(stanza.Wait, stanza.InternalServerError, "")
		}
	}
	msg := q.message(m, owner)
	var kept offline.Kept
	var err error
	if q.Keep != nil {
		kept, err = q.Keep(sctx, msg, offline.Stored{Owner: owner, From: m.From, Body: body}, q.Limit)
	} else {
		kept.ID, err = q.Store.PushOffline(sctx, msg, q.Limit)
	}
	return q.outcome(owner, kept, err)
}

// message is m as it is stored for owner: stamped with its delay.
func (q *Queue) message(m *router.Stanza, owner auth.Number) offline.Message {
	now := q.now().UTC()
	st := m.Clone()
	st.Inner = delayed(m.Inner, q.Server.Domain(), now)
	return offline.Message{Owner: string(owner), From: m.From.String(), Stamp: now, Stanza: st.Bytes()}
}

// outcome is what the sender of a message learns from keeping it: nil,
// or the stanza.Error to bounce.
func (q *Queue) outcome(owner auth.Number, kept offline.Kept, err error) error {
	switch {
	case errors.Is(err, offline.ErrFull):
		return router.NewError(stanza.Wait, stanza.ResourceConstraint, "the receiver's offline storage is full")
	case err != nil: // a database that fails or hangs (SPEC.md: internal-server-error)
		q.log().Error("offline: storing failed", "owner", owner, "err", err)
		return router.NewError(stanza.Wait, stanza.InternalServerError, "")
	}
	return kept.Warning
}

// storeGrouped is store through Group: m is handed to the writer and
// the sender's reader goes on; origin (nil: not a local session) holds
// until m is committed, and a failure is bounced to the sender then.
func (q *Queue) storeGrouped(ctx context.Context, m *router.Stanza, origin *router.Session) {
	body, hasBody := bodyOf(m)
	if !offline.Keeps(m.Type, hasBody) {
		return
	}
	owner := auth.Number(m.To.Localpart())
	release := func() {}
	if origin != nil {
		release = origin.Hold()
	}
	reply := m.Clone() // what a bounce needs; the reader's stanza is not kept
	reply.Inner = nil
	q.Group(ctx, q.message(m, owner), offline.Stored{Owner: owner, From: m.From, Body: body}, q.Limit,
		func(kept offline.Kept, err error) {
			defer release() // after the bounce: an answer that follows comes after it
			if e := q.outcome(owner, kept, err); e != nil {
				q.Server.Bounce(reply, e)
			}
		})
}

// Notice runs the SMS notice rules for m, a message to an offline
// receiver, as store does, but does not store it: it is kept elsewhere
// (the message archive a XEP-0198 session's client reads, when that
// session ended without acknowledging it).
func (q *Queue) Notice(ctx context.Context, m *router.Stanza) error {
	body, hasBody := bodyOf(m)
	if q.Notify == nil || !offline.Keeps(m.Type, hasBody) {
		return nil
	}
	sctx, cancel := q.Server.StoreContext(ctx)
	defer cancel()
	return q.Notify(sctx, offline.Stored{Owner: auth.Number(m.To.Localpart()), From: m.From, Body: body})
}

// delayed returns inner with the XEP-0203 stamp added: from the server,
// when it was stored.
func delayed(inner []byte, domain string, t time.Time) []byte {
	b := wire.NewBuilder(append(make([]byte, 0, len(inner)+96), inner...))
	b.StartNS("delay", NSDelay, "from", domain, "stamp", t.Format(offline.StampFormat))
	return b.End().Bytes()
}

// bodyOf returns the text of a top-level <body/> child, if there is one.
func bodyOf(m *router.Stanza) (string, bool) {
	if !bytes.Contains(m.Inner, []byte("body")) {
		return "", false
	}
	if s, ok := plainBody(m.Inner); ok {
		return s, true
	}
	d := xml.NewDecoder(bytes.NewReader(m.Wrapped()))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return "", false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "body" && t.Name.Space == router.NSClient {
				var s string
				if err := d.DecodeElement(&s, &t); err != nil {
					return "", false
				}
				return s, true
			}
		case xml.EndElement:
			depth--
		}
	}
}

// plainBody is bodyOf without a decoder for what most clients write: a
// first child <body> of plain text (no markup, no reference, no CR that
// XML would normalise). It says false for anything else, which bodyOf
// then decodes; a decoder for every stored message cost as much as
// storing it.
func plainBody(inner []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(bytes.TrimLeft(inner, " \t\n"), []byte("<body>"))
	if !ok {
		return "", false
	}
	i := bytes.IndexAny(rest, "<&\r")
	if i < 0 || !bytes.HasPrefix(rest[i:], []byte("</body>")) {
		return "", false
	}
	return string(rest[:i]), true
}

var pingPayload = wire.NewBuilder(nil).Element("ping", "urn:xmpp:ping", "").Bytes()

// deliver hands the stored messages to the session that just became
// available, a chunk at a time, each followed by a ping (XEP-0199) from
// the server, and removes a chunk from the store only once the client
// answered that ping: streams are ordered, so the answer proves the
// client processed every message before it (a result or an error alike).
// A client that crashes or drops the stream first gets them again at its
// next login; duplicates are possible, loss is not. The first chunk is
// queued here, right after the presence; the rest goes on in a goroutine
// the router owns, since the answers come through the session's reader,
// which is running this hook.
func (q *Queue) deliver(ctx context.Context, full jid.JID) {
	owner := full.Localpart()
	sctx, cancel := q.Server.StoreContext(ctx)
	msgs, err := q.Store.OfflineMessages(sctx, owner, offline.Batch)
	cancel()
	if err != nil {
		q.log().Error("offline: loading failed", "owner", owner, "err", err)
		return
	}
	if len(msgs) == 0 {
		return
	}
	ids, ok := q.handOver(full, msgs)
	if !ok {
		return
	}
	q.Server.Go(func(ctx context.Context) { q.confirm(ctx, full, ids, msgs[len(ids):]) })
}

// handOver writes the next chunk of msgs to the session and returns its
// ids; false when the session is gone.
func (q *Queue) handOver(full jid.JID, msgs []offline.Message) ([]int64, bool) {
	chunk := msgs[:offline.Chunk(msgs, offline.ChunkBytes)]
	ids := make([]int64, 0, len(chunk))
	for _, m := range chunk {
		if !q.Server.Deliver(full, router.RawStanza(m.Stanza)) {
			return nil, false
		}
		ids = append(ids, m.ID)
	}
	return ids, true
}

// confirm waits for the client's answer to the ping after the chunk ids,
// removes the chunk, and hands over the next (from rest, then from the
// store) until none is left, the session ends or the router closes.
func (q *Queue) confirm(ctx context.Context, full jid.JID, ids []int64, rest []offline.Message) {
	owner := full.Localpart()
	timeout := q.AckTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	for round := 0; round < 100_000; round++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		_, err := q.Server.QuerySession(actx, full, "get", pingPayload)
		cancel()
		if err != nil {
			q.log().Info("offline: delivery not confirmed by the client; what it did not confirm comes again at its next login",
				"to", full.String(), "unconfirmed", len(ids), "err", err)
			return
		}
		sctx, cancel := q.Server.StoreContext(ctx)
		err = q.Store.DeleteOffline(sctx, owner, ids)
		cancel()
		if err != nil {
			q.log().Error("offline: removing delivered messages failed (they will come again)", "owner", owner, "err", err)
			return
		}
		if len(rest) == 0 {
			sctx, cancel := q.Server.StoreContext(ctx)
			rest, err = q.Store.OfflineMessages(sctx, owner, offline.Batch)
			cancel()
			if err != nil {
				q.log().Error("offline: loading failed", "owner", owner, "err", err)
				return
			}
			if len(rest) == 0 {
				return
			}
		}
		var ok bool
		if ids, ok = q.handOver(full, rest); !ok {
			return
		}
		rest = rest[len(ids):]
	}
}
