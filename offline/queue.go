package offline

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Deliverer is what the queue needs from the server: writing a stanza to
// one session, and asking that session an iq whose answer proves that it
// took everything written to it before (xmppd.Server.QuerySession).
type Deliverer interface {
	Domain() string
	Deliver(full jid.JID, st *router.Stanza) bool
	QuerySession(ctx context.Context, full jid.JID, typ string, payload []byte) (*router.Stanza, error)
}

// Stored describes a message about to be stored, for the notice path
// (package sms decides whether and what to text).
type Stored struct {
	Owner auth.Number
	From  jid.JID // the sender's full JID
	Body  string
}

// Kept is what a KeepFunc reports.
type Kept struct {
	ID int64
	// Warning, when not nil, is a stanza.Error sent back to the sender
	// although the message was stored (e.g. policy-violation: no SMS was
	// sent), or, with ID 0, instead of storing it (policy-violation: the
	// sender wrote to too many new numbers today).
	Warning error
}

// KeepFunc stores m (ErrFull when its owner has limit messages; limit <= 0:
// no limit) and, in the same transaction, what its arrival causes: the
// notice SMS, the account that a message to a latent number makes
// unclaimed. A crash leaves both or neither.
type KeepFunc func(ctx context.Context, m Message, s Stored, limit int) (Kept, error)

// Queue is the offline-message module (XEP-0160): it stores messages for
// accounts without an available resource and delivers them, oldest first,
// when the account sends initial presence, removing them only once the
// receiving client has shown it processed them (see deliver). Close it
// before the store.
type Queue struct {
	Store    Store
	Accounts interface {
		Account(ctx context.Context, n auth.Number) (auth.Account, error)
	}
	Server Deliverer
	Limit  int // per account; <= 0: no limit
	// Keep, when set, stores each message with its notice, and takes
	// messages to latent numbers (Accounts is then not asked). Nil:
	// Store.PushOffline alone, and a message to a number without an
	// account gets service-unavailable.
	Keep KeepFunc
	Log  *slog.Logger
	Now  func() time.Time
	// AckTimeout is how long a client may take to answer the ping that
	// follows a batch; then the delivery stops and what it did not
	// confirm is delivered again at the next login. Default 2 minutes.
	AckTimeout time.Duration

	mu      sync.Mutex
	closed  bool
	ctx     context.Context // of the deliveries; cancelled by Close
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// Register plugs the queue into the server: it takes the messages no
// session took, delivers them when a session becomes available, and
// advertises msgoffline.
func (q *Queue) Register(h *router.Hooks) error {
	h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
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
	if m.Type != "" && m.Type != "normal" && m.Type != "chat" {
		return nil // headline, groupchat, error: not stored (SPEC "Offline messages")
	}
	body, ok := bodyOf(m.Inner)
	if !ok {
		return nil // chat states and receipts alone are not kept
	}
	owner := auth.Number(m.To.Localpart())
	if q.Keep == nil {
		if _, err := q.Accounts.Account(ctx, owner); errors.Is(err, auth.ErrNotFound) {
			return stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}
		} else if err != nil {
			q.log().Error("offline: account lookup failed", "owner", owner, "err", err)
			return stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError}
		}
	}
	now := q.now().UTC()
	st := m.Clone()
	st.Inner = appendDelay(append([]byte(nil), m.Inner...), q.Server.Domain(), now)
	msg := Message{Owner: string(owner), From: m.From.String(), Stamp: now, Stanza: st.Bytes()}
	var kept Kept
	var err error
	if q.Keep != nil {
		kept, err = q.Keep(ctx, msg, Stored{Owner: owner, From: m.From, Body: body}, q.Limit)
	} else {
		kept.ID, err = q.Store.PushOffline(ctx, msg, q.Limit)
	}
	if errors.Is(err, ErrFull) {
		return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint,
			Text: map[string]string{"": "the receiver's offline storage is full"}}
	}
	if err != nil {
		q.log().Error("offline: storing failed", "owner", owner, "err", err)
		return stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError}
	}
	return kept.Warning
}

// appendDelay adds the XEP-0203 stamp: from the server, when it was stored.
func appendDelay(inner []byte, domain string, t time.Time) []byte {
	inner = append(inner, `<delay xmlns="urn:xmpp:delay" from="`...)
	inner = wire.AppendEscaped(inner, domain)
	inner = append(inner, `" stamp="`...)
	inner = t.AppendFormat(inner, "2006-01-02T15:04:05.000Z")
	return append(inner, `"/>`...)
}

// bodyOf returns the text of a top-level <body/> child, if there is one.
func bodyOf(inner []byte) (string, bool) {
	if !bytes.Contains(inner, []byte("body")) {
		return "", false
	}
	d := xml.NewDecoder(io.MultiReader(bytes.NewReader([]byte(`<m xmlns="jabber:client">`)), bytes.NewReader(inner), bytes.NewReader([]byte(`</m>`))))
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

// batch is how many stored messages are loaded at a time, and
// chunkBytes how many bytes of them are handed to a session before its
// client must answer: far below the bound of its write queue (1 MiB),
// whatever else it receives meanwhile.
const (
	batch      = 100
	chunkBytes = 256 << 10
)

var pingPayload = []byte(`<ping xmlns="urn:xmpp:ping"/>`)

// deliver runs when a session becomes available. It hands the stored messages to the
// session that just became available, a chunk at a time, each followed
// by a ping (XEP-0199) from the server, and removes a chunk from the store
// only once the client answered that ping: streams are ordered, so the
// answer proves the client processed every message before it (a result
// or an error alike). A client that crashes or drops the stream first
// gets them again at its next login; duplicates are possible, loss is
// not. The first chunk is queued here, right after the presence; the rest
// goes on in a goroutine of the queue, since the answers come through the
// session's reader, which is running this hook.
func (q *Queue) deliver(ctx context.Context, full jid.JID) {
	owner := full.Localpart()
	msgs, err := q.Store.OfflineMessages(ctx, owner, batch)
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
	q.start(func(ctx context.Context) { q.confirm(ctx, full, ids, msgs[len(ids):]) })
}

// handOver writes messages to the session, at most chunkBytes of them
// (one at least), and returns the ids written; false when the session
// is gone.
func (q *Queue) handOver(full jid.JID, msgs []Message) ([]int64, bool) {
	var ids []int64
	size := 0
	for _, m := range msgs {
		if len(ids) > 0 && size+len(m.Stanza) > chunkBytes {
			break
		}
		if !q.Server.Deliver(full, router.RawStanza(m.Stanza)) {
			return nil, false
		}
		ids = append(ids, m.ID)
		size += len(m.Stanza)
	}
	return ids, true
}

// confirm waits for the client's answer to the ping after the chunk ids,
// removes the chunk, and hands over the next (from rest, then from the
// store) until none is left, the session ends or the queue is closed.
func (q *Queue) confirm(ctx context.Context, full jid.JID, ids []int64, rest []Message) {
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
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = q.Store.DeleteOffline(dctx, owner, ids)
		cancel()
		if err != nil {
			q.log().Error("offline: removing delivered messages failed (they will come again)", "owner", owner, "err", err)
			return
		}
		if len(rest) == 0 {
			if rest, err = q.Store.OfflineMessages(ctx, owner, batch); err != nil {
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

// start runs f in a goroutine that Close stops and waits for; false
// (nothing run) once the queue is closed.
func (q *Queue) start(f func(ctx context.Context)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if q.ctx == nil {
		q.ctx, q.cancel = context.WithCancel(context.Background())
	}
	q.running.Add(1)
	ctx := q.ctx
	go func() {
		defer q.running.Done()
		f(ctx)
	}()
	return true
}

// Close stops the deliveries under way (what they did not confirm stays
// stored) and waits for them. Call it after the server's Shutdown and
// before closing the store.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	cancel := q.cancel
	q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	q.running.Wait()
}
