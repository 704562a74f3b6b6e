// Package mam is the message archive: XEP-0313 Message Archive Management
// (urn:xmpp:mam:2 and #extended) with XEP-0359 stanza ids.
//
// Every chat or normal message with a body that a local account sends or
// receives is archived for that account. The receiver's copy gets a
// <stanza-id by='ACCOUNT' id='ID'/>, ID being the archive id (package
// archive): the id a client pages with and the one its carbons and
// offline copies carry. A stanza-id that claims to be by one of our JIDs
// and that we did not add is removed (XEP-0359 §3.1).
//
// Archiving is write-behind: a hook puts the message on a bounded queue
// and routing goes on; one writer commits what has queued in one
// transaction per batch (group commit). A query first waits for the queue
// to be written up to that point, so a client always finds what was
// already routed to it. What a crash may lose is bounded by the queue:
// Config.QueueSize messages at most (queued, or taken by the writer and
// not yet committed), in practice those of the last quarter second
// (DefaultLinger and a commit).
package mam

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/archive"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Namespaces.
const (
	NS         = "urn:xmpp:mam:2"
	NSExtended = "urn:xmpp:mam:2#extended"
	// NSSID is XEP-0359 Unique and Stable Stanza IDs.
	NSSID     = "urn:xmpp:sid:0"
	NSRSM     = "http://jabber.org/protocol/rsm"
	NSForward = "urn:xmpp:forward:0"
	NSDelay   = "urn:xmpp:delay"
	NSData    = "jabber:x:data"
	NSHints   = "urn:xmpp:hints"
)

// Defaults of Config.
const (
	// DefaultQueueSize bounds what waits for the writer (about 400 bytes
	// a message: 25 MiB at most), DefaultBatchSize one transaction.
	DefaultQueueSize = 65536
	DefaultBatchSize = 32768
	// DefaultLinger is how long the writer lets a batch gather after its
	// first message (unless a query waits, or the batch is full): one
	// transaction and one sync per linger instead of per message, and
	// larger chunks per conversation. Every commit rewrites the index
	// pages of each owner in it (SQLite logs whole pages), so with many
	// conversations the cost per message falls with the linger: with 200
	// clients chatting as fast as they can, 50 ms (and batches of 4096)
	// wrote 63 MB/s to the disk and cost 14.7 us of CPU a message, 250 ms
	// (and batches that do not cut it short) 13 MB/s and 9.9 us. It is
	// also what a crash may lose of the archive (README).
	DefaultLinger = 250 * time.Millisecond
	// DefaultMax is the page size of a query without <max/>; MaxPage
	// bounds a larger one.
	DefaultMax = 50
	MaxPage    = 250
)

// Config configures the module.
type Config struct {
	Store archive.Store
	// Retention: messages older than this are removed by a sweep
	// (XMPPD_ARCHIVE_RETENTION); 0 keeps them.
	Retention time.Duration
	// QueueSize bounds the messages queued or being written; BatchSize
	// the messages written in one transaction.
	QueueSize, BatchSize int
	// Linger is how long a batch gathers after its first message
	// (DefaultLinger when 0; negative: not at all).
	Linger time.Duration
	// Log takes write errors; nil discards them.
	Log *slog.Logger
	// Exclusive, when set, runs the retention sweep (a job named name
	// until ctx ends) on one node of a cluster at a time; nil: here.
	Exclusive func(ctx context.Context, name string, job func(context.Context))
}

// Priority is the priority of the archive's hooks: after blocking's
// filters (100), which stop what is never archived, before carbons (0),
// offline storage and delivery, which copy what the archive stamped.
const Priority = 90

// queried marks a session that queried the archive on its stream.
var queried = router.NewKey[atomic.Bool]()

// senderCopy is the sender's copy of a message from a local session to an
// account here, left by the PreRoute hook to the Inbound one (both run on
// the sender's goroutine, one after the other): it is stored with the
// bytes the receiver's copy is serialised into anyway, so the routing
// path neither copies the stanza nor serialises it twice.
type senderCopy struct {
	st  *router.Stanza
	msg archive.Message
}

// deferred is the session's senderCopy waiting for its Inbound hook (one
// at most: the next message replaces one that never got there, refused
// before the archive's Inbound hook, e.g. blocked by the receiver).
var deferred = router.NewKey[senderCopy]()

// Module is the archive module.
type Module struct {
	cfg    Config
	r      router.Routing
	domain string
	clock  archive.Clock

	// The queue: a slice under a lock, taken whole by the writer. (A
	// channel of QueueSize items was 11 MB allocated at start, which
	// counted as live heap and raised every collection's goal by as
	// much; and a channel operation per message.)
	qmu    sync.Mutex
	queued []item // in order
	spare  []item // the writer's last, emptied, for the next round
	// inflight is how many items the writer took and has not committed
	// yet: they count against QueueSize too, which so bounds what a
	// crash may lose.
	inflight int
	// room, when a sender waits for the queue to have room, is closed
	// when the writer has committed what it took.
	room    chan struct{}
	pending atomic.Int64 // queued and not yet committed
	// ready wakes the writer when the queue stops being empty; wake cuts
	// its linger short: a query waits, or a batch is ready.
	ready, wake chan struct{}

	prefs  sync.Map // owner → archive.Prefs
	prefsN atomic.Int64

	failed  sync.Map // archive id → struct{}: given, not written
	failedN atomic.Int64
}

// item is one message to write, or (flushed set) a mark: the writer
// closes flushed once everything queued before it is committed.
type item struct {
	msg archive.Message
	// st, when set, is serialised into msg.Stanza by the writer, off the
	// routing path (a copy of a stanza that the routing changes after).
	st *router.Stanza
	// also, when its Owner is set, is a second message (the sender's
	// copy of msg, sharing its stanza).
	also    archive.Message
	flushed chan struct{}
}

// New returns the module.
func New(cfg Config) *Module {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Module{cfg: cfg, ready: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
}

// Register hooks the archiving in before carbons (PreRoute) and before
// delivery (Inbound), answers queries and preferences for the sender's own
// account, advertises the features on the domain and on accounts, and
// starts the writer and the retention sweep.
func (m *Module) Register(h *router.Hooks) error {
	if m.cfg.Store == nil {
		return errors.New("mam: no store")
	}
	if r := h.Router(); r != nil { // nil outside a server (router.NewHooks)
		m.r, m.domain = r, r.Domain()
	}
	// Ids continue past the stored ones, whatever the clock did since.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last, err := m.cfg.Store.LastArchiveID(ctx)
	if err != nil {
		return fmt.Errorf("mam: %w", err)
	}
	m.clock.Start(last)

	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "query"}, m.query)
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "prefs"}, m.prefsIQ)
	for _, f := range []string{NS, NSExtended, NSSID} {
		h.AddFeature(router.ScopeServer|router.ScopeAccount, f)
	}
	// Carbons copy at PreRoute priority 0 and Delivered: the sender's id
	// is on the stanza for <sent/> copies only (added at Priority,
	// removed at -Priority); the receiver's, added at Inbound, stays for <received/>
	// copies, offline storage and delivery.
	h.Hook(router.PreRoute, router.Messages, Priority, m.outgoing)
	h.Hook(router.PreRoute, router.Messages, -Priority, m.stripOurs)
	h.Hook(router.Inbound, router.Messages, Priority, m.incoming)
	// The preferences of an account with a session are at hand for
	// routing (archives).
	h.OnSession(router.Bound, 0, func(ctx context.Context, s *router.Session) {
		if _, err := m.loadPrefs(ctx, s.Bare().Localpart()); err != nil {
			m.cfg.Log.Error("archive preferences", "owner", s.Bare().Localpart(), "err", err)
		}
	})
	h.Go(m.write)
	if m.cfg.Retention > 0 {
		if m.cfg.Exclusive != nil {
			h.Go(func(ctx context.Context) { m.cfg.Exclusive(ctx, "archive retention", m.sweep) })
		} else {
			h.Go(m.sweep)
		}
	}
	return nil
}

// Archived reports whether session s queried the archive on its stream
// and st was archived for s's account (it carries the stanza-id of s's
// account): a message stream management may leave to the archive instead
// of storing it offline.
func (m *Module) Archived(s *router.Session, st *router.Stanza) bool {
	if !queried.Get(s).Load() || !bytes.Contains(st.Inner, []byte(NSSID)) {
		return false
	}
	bare := s.Bare().String()
	found := false
	eachChild(st.Inner, func(_, _ int, tag []byte) bool {
		if se, ok := stanzaID(tag); ok && attr(se, "by") == bare {
			id, err := archive.ParseID(attr(se, "id"))
			_, failed := m.failed.Load(id)
			found = err == nil && !failed
		}
		return !found
	})
	return found
}

// archivable reports whether a message is archived (XEP-0313 §5.1.1, as
// Prosody and ejabberd read it): type chat or normal, a <body/>, and no
// <no-store/> or <no-permanent-store/> hint.
func archivable(st *router.Stanza) bool {
	if st.Kind != router.KindMessage || st.Type != "chat" && st.Type != "normal" && st.Type != "" {
		return false
	}
	body, hints, noStore := false, bytes.Contains(st.Inner, []byte(NSHints)), false
	eachChild(st.Inner, func(_, _ int, tag []byte) bool {
		switch name := string(tagName(tag)); {
		case name == "body":
			body = body || !bytes.Contains(tag, []byte("xmlns")) || bytes.Contains(tag, []byte(router.NSClient))
		case hints && (name == "no-store" || name == "no-permanent-store"):
			se, ok := parseTag(tag)
			noStore = ok && se.Name.Space == NSHints
		}
		// A hint may follow the body: look on while there may be one.
		return !noStore && (!body || hints)
	})
	return body && !noStore
}

// stanzaID reports whether tag starts an XEP-0359 <stanza-id/>, and
// decodes it.
func stanzaID(tag []byte) (xml.StartElement, bool) {
	if !bytes.HasSuffix(tagName(tag), []byte("stanza-id")) {
		return xml.StartElement{}, false
	}
	se, ok := parseTag(tag)
	return se, ok && se.Name.Space == NSSID && se.Name.Local == "stanza-id"
}

// stripOurs removes every <stanza-id/> whose 'by' is this domain or an
// address at it: only the archive adds those, to its own copies.
func (m *Module) stripOurs(_ context.Context, ev *router.Event) error {
	m.strip(ev.Stanza)
	return nil
}

func (m *Module) strip(st *router.Stanza) {
	if !bytes.Contains(st.Inner, []byte(NSSID)) {
		return
	}
	var cut [][2]int
	eachChild(st.Inner, func(start, end int, tag []byte) bool {
		if se, ok := stanzaID(tag); ok {
			if by, err := jid.Parse(attr(se, "by")); err == nil && by.Domainpart() == m.domain {
				cut = append(cut, [2]int{start, end})
			}
		}
		return true
	})
	if len(cut) == 0 {
		return
	}
	inner := make([]byte, 0, len(st.Inner))
	at := 0
	for _, c := range cut {
		inner = append(inner, st.Inner[at:c[0]]...)
		at = c[1]
	}
	st.SetInner(append(inner, st.Inner[at:]...))
}

// withStanzaID returns a copy of inner with <stanza-id/> of the archive
// of bare appended.
func withStanzaID(inner []byte, bare string, id int64) []byte {
	out := make([]byte, len(inner), len(inner)+len(bare)+80)
	copy(out, inner)
	return appendStanzaID(out, bare, id)
}

// stanzaIDOf is the element <stanza-id by=bare id=id/>.
func stanzaIDOf(bare string, id int64) []byte {
	return appendStanzaID(make([]byte, 0, len(bare)+80), bare, id)
}

// appendStanzaID appends <stanza-id by=bare id=id/> to out, as
// wire.Builder would write it, by hand: it is done for every archived
// message.
func appendStanzaID(out []byte, bare string, id int64) []byte {
	out = append(out, `<stanza-id xmlns="`+NSSID+`"`...)
	out = wire.AppendAttr(out, "by", bare)
	out = append(out, ` id="`...)
	out = archive.AppendID(out, id)
	return append(out, `"/>`...)
}

// outgoing archives a message a local session sends, for the sender's
// account. When the account has another resource, the stanza carries the
// sender's stanza-id through the carbons hook (stripOurs removes it after).
func (m *Module) outgoing(ctx context.Context, ev *router.Event) error {
	st, from := ev.Stanza, ev.Origin
	m.strip(st)
	if from == nil || st.To.Localpart() == "" && st.To.Domainpart() == m.domain || !archivable(st) {
		return nil
	}
	bare := from.Bare()
	to := st.ToBare()
	if to == bare.String() {
		return nil // to its own account: archived once, as received
	}
	owner := bare.Localpart()
	if !m.archives(owner, to) {
		return nil
	}
	id := m.clock.Next()
	msg := archive.Message{Owner: owner, ID: id, With: to, WithResource: st.To.Resourcepart()}
	if st.To.Domainpart() == m.domain {
		// To an account here: stored by incoming with the receiver's copy.
		*deferred.Get(from) = senderCopy{st: st, msg: msg}
	} else {
		// The copy is serialised by the writer: the sent stanza is not
		// written to any stream here, so its bytes are not needed now.
		m.enqueue(ctx, item{msg: msg, st: st.Clone()})
	}
	if len(m.r.Sessions(bare)) > 1 {
		st.SetInner(withStanzaID(st.Inner, bare.String(), id))
	}
	return nil
}

// incoming archives a message to a local account for it and gives the
// copy the account gets its stanza-id.
func (m *Module) incoming(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if router.IsRerouted(ctx) {
		// Routed again by the server (a node died before its session
		// acknowledged it): archived already, and its stanza-id, ours, is
		// the one its first delivery carried.
		return nil
	}
	m.strip(st)
	var sent archive.Message // the sender's copy, when left to this hook
	if ev.Origin != nil {
		if d := deferred.Get(ev.Origin); d.st == st {
			sent = d.msg
			*d = senderCopy{}
		}
	}
	if !archivable(st) {
		return nil
	}
	// No store call here: a receiver without an account (a number never
	// used) is left out by the writer, which also applies preferences not
	// yet cached.
	owner := st.To.Localpart()
	with := st.From.Bare().String()
	if !m.archives(owner, with) {
		if sent.Owner != "" {
			sent.Stanza = st.Bytes()
			m.enqueue(ctx, item{msg: sent})
		}
		return nil
	}
	id := m.clock.Next()
	// Delivery needs these bytes too (Bytes caches them); the sender's
	// copy shares them (its client reads only the stanza-id by its own
	// account).
	b := st.AppendChild(stanzaIDOf(st.ToBare(), id))
	if sent.Owner != "" {
		sent.Stanza = b
	}
	m.enqueue(ctx, item{msg: archive.Message{Owner: owner, ID: id, With: with, WithResource: st.From.Resourcepart(), Stanza: b}, also: sent})
	return nil
}

// Forget drops the cached preferences of an account that was recycled or
// released (account.BlockCache).
func (m *Module) Forget(bare jid.JID) { m.prefs.Delete(bare.Localpart()) }

// prefsCacheMax bounds the cached preferences; past it the cache starts
// afresh.
const prefsCacheMax = 100_000

// archives reports whether owner's preferences, as cached, archive
// messages with the bare JID with. The routing path never waits for the
// store: the preferences of an account with a session are loaded when it
// binds; those not cached count as the default (always) here, and the
// writer applies them before writing.
func (m *Module) archives(owner, with string) bool {
	v, ok := m.prefs.Load(owner)
	return !ok || v.(archive.Prefs).Archives(with, nil)
}

// loadPrefs reads owner's preferences into the cache.
func (m *Module) loadPrefs(ctx context.Context, owner string) (archive.Prefs, error) {
	if v, ok := m.prefs.Load(owner); ok {
		return v.(archive.Prefs), nil
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	p, err := m.cfg.Store.ArchivePrefs(sctx, owner)
	if err != nil {
		return p, err
	}
	if m.prefsN.Add(1) > prefsCacheMax {
		m.prefs.Clear()
		m.prefsN.Store(1)
	}
	m.prefs.Store(owner, p)
	return p, nil
}

// keep is the writer's check of a batch before it is written: the owner
// has an account, and its preferences archive the message. What it
// leaves out is marked not archived (Archived).
func (m *Module) keep(batch []archive.Message) []archive.Message {
	ctx := context.Background()
	// An owner's verdict is looked up once a batch: a batch holds
	// thousands of messages of a few hundred owners.
	type verdict struct {
		local bool
		prefs archive.Prefs
		err   error
	}
	owners := map[string]*verdict{}
	out := batch[:0]
	for _, msg := range batch {
		v := owners[msg.Owner]
		if v == nil {
			v = &verdict{}
			j, err := jid.New(msg.Owner, m.domain, "")
			if err == nil {
				v.local, err = m.r.IsLocal(ctx, j)
			}
			if err != nil {
				m.cfg.Log.Error("archive: is it an account", "owner", msg.Owner, "err", err)
			}
			if v.local {
				v.prefs, v.err = m.loadPrefs(ctx, msg.Owner)
			}
			owners[msg.Owner] = v
		}
		// A store error archives (the default).
		if v.local && (v.err != nil || v.prefs.Archives(msg.With, nil)) {
			out = append(out, msg)
		} else {
			m.notArchived(msg.ID)
		}
	}
	return out
}

// notArchivedMax bounds the ids remembered as not archived.
const notArchivedMax = 100_000

// notArchived remembers that id was given and not written (left out, or
// its batch failed), so that Archived does not count on it.
func (m *Module) notArchived(id int64) {
	if m.failedN.Add(1) > notArchivedMax {
		m.failed.Clear()
		m.failedN.Store(1)
	}
	m.failed.Store(id, struct{}{})
}

// enqueue queues a message for the writer. A full queue holds the
// sender (backpressure from a database that falls behind) until there is
// room or its context ends.
func (m *Module) enqueue(ctx context.Context, it item) {
	n := int64(1)
	if it.also.Owner != "" {
		n = 2
	}
	m.pending.Add(n)
	if !m.push(ctx, it) {
		m.pending.Add(-n)
		m.notArchived(it.msg.ID)
		if n == 2 {
			m.notArchived(it.also.ID)
		}
		m.cfg.Log.Error("archive queue full; message not archived", "owner", it.msg.Owner)
	}
}

// push appends it to the queue, waiting for room until ctx ends (false).
func (m *Module) push(ctx context.Context, it item) bool {
	for {
		m.qmu.Lock()
		if n := len(m.queued); n+m.inflight < m.cfg.QueueSize {
			m.queued = append(m.queued, it)
			m.qmu.Unlock()
			switch {
			case n == 0:
				signal(m.ready)
			case (n+1)%m.cfg.BatchSize == 0:
				m.poke()
			}
			return true
		}
		if m.room == nil {
			m.room = make(chan struct{})
		}
		room := m.room
		m.qmu.Unlock()
		m.poke()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

// take returns what is queued, in order, and empties the queue.
func (m *Module) take() []item {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	got := m.queued
	m.queued, m.spare = m.spare, nil
	m.inflight = len(got)
	return got
}

// recycle ends a round: what the writer took is committed, so there is
// room again; taken's array is kept for the next round (growing one
// anew each round was half of what the archive allocated under load)
// unless the round used little of it (the load fell: a burst's array
// goes back to the collector).
func (m *Module) recycle(taken []item) {
	clear(taken)
	m.qmu.Lock()
	defer m.qmu.Unlock()
	m.inflight = 0
	if m.room != nil {
		close(m.room)
		m.room = nil
	}
	if keepArray(len(taken), cap(taken)) {
		m.spare = taken[:0]
	}
}

// keepArray reports whether an array of capacity c of which a round used n is
// kept for the next round: a small one always, a larger one while
// rounds use a quarter of it.
func keepArray(n, c int) bool { return c <= 1024 || n >= c/4 }

// signal sets c (capacity 1) if it is not set.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// poke wakes the writer if it lingers.
func (m *Module) poke() { signal(m.wake) }

// flush waits until everything queued so far is committed.
func (m *Module) flush(ctx context.Context) error {
	if m.pending.Load() == 0 {
		return nil
	}
	done := make(chan struct{})
	if !m.push(ctx, item{flushed: done}) {
		return ctx.Err()
	}
	m.poke()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write is the writer: once something is queued it lets more gather for
// Linger (less when a query waits or a batch is ready), takes the queue
// and commits it in transactions of up to BatchSize messages, until the
// server shuts down; then it writes what is left.
func (m *Module) write(ctx context.Context) {
	batch := make([]archive.Message, 0, 256)
	var marks []chan struct{}
	commit := func() {
		if len(batch) > 0 {
			m.commit(batch)
			m.pending.Add(-int64(len(batch)))
		}
		for _, c := range marks {
			close(c)
		}
		batch, marks = batch[:0], marks[:0]
	}
	// round commits what is queued, in order: a mark is closed once what
	// came before it is committed.
	round := func() {
		taken := m.take()
		used := 0 // the most batch held this round
		for _, it := range taken {
			switch {
			case it.flushed != nil:
				marks = append(marks, it.flushed)
				continue
			case it.st != nil:
				it.msg.Stanza = it.st.Bytes()
			}
			batch = append(batch, it.msg)
			if it.also.Owner != "" {
				batch = append(batch, it.also)
			}
			if len(batch) >= m.cfg.BatchSize {
				used = len(batch)
				commit()
			}
		}
		used = max(used, len(batch))
		commit()
		if !keepArray(used, cap(batch)) {
			batch = make([]archive.Message, 0, 256) // a burst's: given back
		}
		m.recycle(taken)
	}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// quiet gives the arrays kept for the next round back once none
	// came for a while: an idle server keeps nothing of a burst.
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-m.ready:
		case <-quiet.C:
			batch = nil
			m.qmu.Lock()
			m.spare = nil
			m.qmu.Unlock()
			continue
		case <-ctx.Done():
			round()
			return
		}
		// Linger asleep, not waiting on the queue: a writer woken by
		// every message would cost the routing path a wake-up each.
		if m.cfg.Linger > 0 {
			linger.Reset(m.cfg.Linger)
			select {
			case <-linger.C:
			case <-m.wake:
			case <-ctx.Done():
			}
			linger.Stop()
		}
		round()
		quiet.Reset(quietAfter)
	}
}

// quietAfter is how long after its last round the writer gives back the
// arrays it kept.
var quietAfter = 5 * time.Second

// commit writes one batch, trying again once after a failure.
func (m *Module) commit(batch []archive.Message) {
	batch = m.keep(batch)
	if len(batch) == 0 {
		return
	}
	var err error
	for try := 0; try < 2; try++ {
		ctx, cancel := m.r.StoreContext(context.Background())
		err = m.cfg.Store.AppendArchive(ctx, batch)
		cancel()
		if err == nil {
			return
		}
	}
	m.cfg.Log.Error("archive write failed; messages not archived", "messages", len(batch), "err", err)
	for _, msg := range batch {
		m.notArchived(msg.ID)
	}
}

// sweep removes archived messages older than the retention, at start and
// then every tenth of the retention (at most hourly), in steps.
func (m *Module) sweep(ctx context.Context) {
	every := min(m.cfg.Retention/10, time.Hour)
	every = max(every, time.Second)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.Sweep(ctx, time.Now())
		t.Reset(every)
	}
}

// Sweep removes the messages archived before now - Retention.
func (m *Module) Sweep(ctx context.Context, now time.Time) {
	if m.cfg.Retention <= 0 {
		return
	}
	before := archive.FirstID(now.Add(-m.cfg.Retention))
	const step = 10_000
	for i := 0; i < 10_000 && ctx.Err() == nil; i++ {
		sctx, cancel := m.r.StoreContext(ctx)
		n, err := m.cfg.Store.DeleteArchiveBefore(sctx, before, step)
		cancel()
		if err != nil {
			m.cfg.Log.Error("archive retention sweep", "err", err)
			return
		}
		if n == 0 {
			return
		}
	}
}
