package muc

import (
	"context"
	"encoding/xml"
	"errors"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

const (
	nsMAM     = "urn:xmpp:mam:2"
	nsRSM     = "http://jabber.org/protocol/rsm"
	nsForward = "urn:xmpp:forward:0"
	// archiveQueue bounds the messages waiting to be archived.
	archiveQueue = 8192
	// archiveBatch bounds the messages written in one transaction.
	archiveBatch = 256
	// shutdownWrite bounds writing what is queued at shutdown.
	shutdownWrite = 10 * time.Second
	// mamMax is the largest page a query gets.
	mamMax = 250
)

// archiver writes the rooms' messages to the store in batches (one
// transaction for all that queued while the last one was written), off
// the message path: a room never waits for the database.
type archiver struct {
	m     *Module
	queue chan groups.Message
	flush chan chan struct{}
}

func (a *archiver) init(m *Module) {
	a.m = m
	a.queue = make(chan groups.Message, archiveQueue)
	a.flush = make(chan chan struct{})
}

// add queues a message; a full queue drops it (logged): the room goes on.
func (a *archiver) add(msg groups.Message) {
	select {
	case a.queue <- msg:
	default:
		a.m.Log.Error("group archive queue full: message not archived", "room", msg.Room, "id", msg.ID)
	}
}

// wait returns once everything queued before it was written (a query
// then sees it), or when ctx ends.
func (a *archiver) wait(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case a.flush <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *archiver) run(ctx context.Context) {
	batch := make([]groups.Message, 0, archiveBatch)
	for {
		var waiter chan struct{}
		select {
		case <-ctx.Done():
			// Shut down: write what is queued, within the store timeout.
			for len(a.queue) > 0 && len(batch) < archiveQueue {
				batch = append(batch, <-a.queue)
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWrite)
			a.write(sctx, batch)
			cancel()
			return
		case msg := <-a.queue:
			batch = append(batch, msg)
		case waiter = <-a.flush:
		}
	drain:
		for len(batch) < archiveBatch {
			select {
			case msg := <-a.queue:
				batch = append(batch, msg)
			default:
				break drain
			}
		}
		if waiter != nil {
			// Everything queued before the wait is in the channel now.
			for len(a.queue) > 0 {
				batch = append(batch, <-a.queue)
				if len(batch) >= archiveBatch {
					a.write(ctx, batch)
					batch = batch[:0]
				}
			}
		}
		a.write(ctx, batch)
		batch = batch[:0]
		if waiter != nil {
			close(waiter)
		}
	}
}

// write stores a batch; while the store fails it tries again, waiting
// longer each time (the queue fills meanwhile and then drops, logged), so
// that a message that could not be archived in time is archived later.
func (a *archiver) write(ctx context.Context, batch []groups.Message) {
	if len(batch) == 0 {
		return
	}
	wait := time.Second
	for {
		sctx, cancel := a.m.r.StoreContext(ctx)
		err := a.m.store.AppendMUCArchive(sctx, batch)
		cancel()
		if err == nil {
			return
		}
		a.m.Log.Error("writing the group archive", "messages", len(batch), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

type mamQueryPayload struct {
	XMLName xml.Name  `xml:"urn:xmpp:mam:2 query"`
	QueryID string    `xml:"queryid,attr"`
	Form    *dataForm `xml:"jabber:x:data x"`
	Set     *struct {
		Max    *int    `xml:"max"`
		After  *string `xml:"after"`
		Before *string `xml:"before"`
	} `xml:"http://jabber.org/protocol/rsm set"`
}

// mamQuery answers a XEP-0313 query on a room's archive: the messages as
// <result/> messages to the requester, then the <fin/>.
func (m *Module) mamQuery(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		return nil, err
	}
	if iq.Type == "get" {
		// The form's fields (XEP-0313 §5.1).
		b := wire.NewBuilder(nil)
		b.StartNS("query", nsMAM).StartNS("x", nsData, "type", "form")
		b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", nsMAM).End()
		for _, f := range []string{"with", "start", "end", "after-id", "before-id"} {
			b.Start("field", "var", f, "type", "text-single").End()
		}
		return b.End().End().Bytes(), nil
	}
	var q mamQueryPayload
	if err := iq.DecodePayload(&q); err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	rm.mu.Lock()
	aff := rm.affOf(iq.From.Bare().String())
	occ := rm.byFull[iq.FromString()]
	allowed := aff != Outcast && (!rm.cfg.MembersOnly || aff >= Member || occ != nil)
	// Who may see real JIDs (§7.2.3/§7.2.4) may filter by them.
	seesJIDs := rm.cfg.WhoisAnyone || aff >= Admin || occ != nil && occ.role == Moderator
	rm.mu.Unlock()
	if !allowed {
		return nil, authError(stanza.Forbidden, "only members may read this group's archive")
	}
	gq := groups.Query{Max: mamMax}
	if q.Form != nil {
		v := q.Form.values()
		if vals := v["with"]; len(vals) > 0 && vals[0] != "" {
			if err := rm.withFilter(&gq, vals[0], seesJIDs); err != nil {
				return nil, err
			}
		}
		for name, dst := range map[string]*time.Time{"start": &gq.Start, "end": &gq.End} {
			if vals := v[name]; len(vals) > 0 && vals[0] != "" {
				t, err := time.Parse(time.RFC3339, vals[0])
				if err != nil {
					return nil, router.NewError(stanza.Modify, stanza.BadRequest, "a date is malformed")
				}
				*dst = t
			}
		}
		if vals := v["after-id"]; len(vals) > 0 {
			gq.AfterID = vals[0]
		}
		if vals := v["before-id"]; len(vals) > 0 {
			gq.BeforeID, gq.Last = vals[0], true
		}
	}
	if s := q.Set; s != nil {
		if s.Max != nil && *s.Max >= 0 && *s.Max < mamMax {
			gq.Max = *s.Max
		}
		if s.After != nil {
			gq.AfterID = *s.After
		}
		if s.Before != nil {
			gq.BeforeID, gq.Last = *s.Before, true
		}
	}
	if err := m.archive.wait(ctx); err != nil {
		return nil, err
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	msgs, complete, err := m.store.MUCArchive(sctx, rm.jidStr, gq)
	if errors.Is(err, groups.ErrUnknownID) {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no message of that id in the archive")
	}
	if err != nil {
		return nil, err
	}
	if gq.Max == 0 {
		msgs = nil
	}
	for _, msg := range msgs {
		m.sendResult(ctx, iq, rm, q.QueryID, msg)
	}
	b := wire.NewBuilder(nil)
	b.StartNS("fin", nsMAM)
	if complete {
		b.Attr("complete", "true")
	}
	b.StartNS("set", nsRSM)
	if len(msgs) > 0 {
		b.Element("first", "", msgs[0].ID).Element("last", "", msgs[len(msgs)-1].ID)
	}
	return b.End().End().Bytes(), nil
}

// withFilter narrows q to the messages of one sender (XEP-0313 §"Querying
// a MUC archive"): an occupant JID (room@groups/nick) selects the messages
// sent under that nick; a real bare JID, which only those who may see
// real JIDs may give, those its user sent under any nick.
func (rm *room) withFilter(q *groups.Query, with string, seesJIDs bool) error {
	w, err := jid.Parse(with)
	if err != nil {
		return router.NewError(stanza.Modify, stanza.BadRequest, "'with' is not a JID")
	}
	if w.Bare().Equal(rm.jid) {
		// The room's own JID: every message is with it.
		q.Nick = w.Resourcepart()
		return nil
	}
	if !seesJIDs {
		return authError(stanza.Forbidden, "this group hides its members' addresses")
	}
	q.Sender = w.Bare().String()
	return nil
}

// sendResult sends one archived message to the requester of iq.
func (m *Module) sendResult(ctx context.Context, iq *router.Stanza, rm *room, queryID string, msg groups.Message) {
	stored := &outgoing{kind: router.KindMessage, rest: msg.Stanza}
	b := wire.NewBuilder(make([]byte, 0, len(msg.Stanza)+256))
	b.StartNS("result", nsMAM, "queryid", queryID, "id", msg.ID)
	b.StartNS("forwarded", nsForward)
	b.StartNS("delay", nsDelay, "stamp", msg.Stamp.UTC().Format("2006-01-02T15:04:05.000000Z")).End()
	b.Raw(stored.withAttr("xmlns", router.NSClient))
	b.End().End()
	out := &outgoing{kind: router.KindMessage, from: rm.jid, inner: b.Bytes()}
	s := &session{full: iq.From, fullStr: iq.FromString()}
	rm.send(ctx, s, out)
}

// mamPrefs: a room's archive has no per-user preferences; it answers
// with 'always' so that clients stop asking.
func (m *Module) mamPrefs(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if _, err := m.roomOf(ctx, iq); err != nil {
		return nil, err
	}
	if iq.Type == "set" {
		return nil, router.NewError(stanza.Cancel, stanza.NotAllowed, "a group's archive keeps every message")
	}
	return wire.NewBuilder(nil).StartNS("prefs", nsMAM, "default", "always").End().Bytes(), nil
}
