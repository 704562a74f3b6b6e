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
	"dialtone/xmppd"
)

// Deliverer is what the queue needs from the server: writing a stanza to
// one session and learning whether it reached the connection.
type Deliverer interface {
	Domain() string
	DeliverConfirmed(full jid.JID, st *xmppd.Stanza, done func(written bool))
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
// when the account sends initial presence, removing each only after it was
// written to the receiver's stream.
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
}

// Register plugs the queue into the server.
func (q *Queue) Register(mux *xmppd.Mux) {
	mux.HandleOffline(q.store)
	mux.OnAvailable(q.deliver)
	mux.AddFeature(xmppd.ScopeServer, "msgoffline")
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

// store is the xmppd.OfflineHandler.
func (q *Queue) store(ctx context.Context, m *xmppd.Stanza) error {
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
	inner = xmppd.AppendEscaped(inner, domain)
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
			if depth == 2 && t.Name.Local == "body" && t.Name.Space == xmppd.NSClient {
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

// batch is how many stored messages are handed over at a time.
const batch = 100

// deliver is the xmppd.AvailableHook: it writes the stored messages to the
// session that just became available and removes each as soon as the
// session's writer reports it written, so that a crash can bring back only
// what was being written at that moment.
func (q *Queue) deliver(ctx context.Context, full jid.JID) {
	owner := full.Localpart()
	for round := 0; round < 1000; round++ {
		msgs, err := q.Store.OfflineMessages(ctx, owner, batch)
		if err != nil {
			q.log().Error("offline: loading failed", "owner", owner, "err", err)
			return
		}
		if len(msgs) == 0 {
			return
		}
		type result struct {
			id int64
			ok bool
		}
		// Buffered for all: the writer goroutine never waits on us.
		results := make(chan result, len(msgs))
		for _, m := range msgs {
			id := m.ID
			q.Server.DeliverConfirmed(full, xmppd.RawStanza(m.Stanza), func(ok bool) {
				results <- result{id, ok}
			})
		}
		written, answered := 0, 0
		timeout := time.After(2 * time.Minute)
		for answered < len(msgs) {
			var ids []int64
			select {
			case r := <-results:
				answered++
				if r.ok {
					ids = append(ids, r.id)
				}
			case <-timeout:
				q.log().Warn("offline: delivery not confirmed in time", "to", full.String())
				return
			}
			// take whatever else was confirmed by the same write
		more:
			for {
				select {
				case r := <-results:
					answered++
					if r.ok {
						ids = append(ids, r.id)
					}
				default:
					break more
				}
			}
			if len(ids) == 0 {
				continue
			}
			written += len(ids)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err := q.Store.DeleteOffline(dctx, owner, ids)
			cancel()
			if err != nil {
				q.log().Error("offline: removing delivered messages failed (they will come again)", "owner", owner, "err", err)
				return
			}
		}
		if written < len(msgs) {
			return // the session went away; the rest waits for the next login
		}
	}
}
