package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxDeliveries bounds a room run: clients × clients × messages.
const maxDeliveries = 200_000_000

// The room scenario: every client joins one room of the MUC service
// (--muc) and sends --messages groupchat messages; every occupant gets
// every message (its own as the reflection), each counted by its id
// 'dlt-SEQ' where SEQ = k×clients + sender.

// roomClient is one occupant: its sender writes to the room, its reader
// counts every message of the room.
type roomClient struct {
	s    *session
	idx  int
	nick string

	sent atomic.Int64 // by this client's sender
	// echoed counts this client's own messages reflected back (its
	// window), bounced its messages that came back as errors.
	echoed, bounced atomic.Int64
	// rx counts the messages of any sender received (first time), dup
	// those received again.
	rx, dup atomic.Int64
	lastRx  atomic.Int64 // unix nanos of the last read with messages
	lat     hist         // reader-owned until the reader ends
	wake    chan struct{}
	readErr error
}

// roomJID is the room of the run on c.muc.
func (c *config) roomJID() string { return c.room + "@" + c.muc }

// joinPresence asks for no discussion history: only the run's messages
// are counted.
func joinPresence(roomJID, nick string) string {
	return `<presence to='` + roomJID + `/` + nick + `'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0' maxchars='0'/></x></presence>`
}

// mucPresence is what joining reads of a presence.
type mucPresence struct {
	From   string `xml:"from,attr"`
	Type   string `xml:"type,attr"`
	Status []struct {
		Code string `xml:"code,attr"`
	} `xml:"http://jabber.org/protocol/muc#user x>status"`
	Error struct {
		Inner string `xml:",innerxml"`
	} `xml:"error"`
}

// join enters the room as nick and returns once the room sent the
// self-presence (status 110) and, when the join created the room (201),
// the owner made it an instant room. It reads with an XML decoder that
// takes no byte past the element it returns, so the raw reader takes over.
func (rc *roomClient) join(ctx context.Context, roomJID string, maxElems int) error {
	dl, _ := ctx.Deadline()
	rc.s.conn.SetReadDeadline(dl)
	defer rc.s.conn.SetReadDeadline(time.Time{})
	if err := rc.s.send(joinPresence(roomJID, rc.nick)); err != nil {
		return err
	}
	dec := xml.NewDecoder(rc.s.r)
	dec.Strict = false
	self := roomJID + "/" + rc.nick
	for range maxElems {
		start, err := nextElement(dec)
		if err != nil {
			return err
		}
		if start.Name.Local != "presence" {
			if err := dec.Skip(); err != nil {
				return err
			}
			continue
		}
		var p mucPresence
		if err := dec.DecodeElement(&p, &start); err != nil {
			return err
		}
		if p.From != self {
			continue
		}
		if p.Type == "error" {
			return fmt.Errorf("join %s: %s", self, p.Error.Inner)
		}
		created := false
		for _, st := range p.Status {
			created = created || st.Code == "201"
		}
		if !created {
			return nil
		}
		// A new room is locked until configured: the default
		// configuration (an instant room, XEP-0045 §10.1.2).
		if err := rc.s.send(`<iq type='set' id='cfg1' to='` + roomJID + `'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`); err != nil {
			return err
		}
		if err := expectIQ(dec, "cfg1", nil); err != nil {
			return fmt.Errorf("instant room %s: %w", roomJID, err)
		}
		return nil
	}
	return fmt.Errorf("join %s: no self-presence among %d elements", self, maxElems)
}

// joinAll joins the first client (which makes the room), then the others
// with at most c.concurrency joins in progress; each client's reader
// starts as soon as it is in, so that it drains the presences of the
// later joins. It returns how long joining took.
func joinAll(ctx context.Context, c *config, clients []*roomClient, readers *sync.WaitGroup) (time.Duration, error) {
	start := time.Now()
	// Joins cost the server about clients² presences: the budget grows so
	// (100 µs each), within the run's bound.
	n := time.Duration(len(clients))
	jctx, cancel := context.WithTimeout(ctx, loginTimeout+n*n*100*time.Microsecond)
	defer cancel()
	roomJID := c.roomJID()
	maxElems := 4*len(clients) + 100
	startReader := func(rc *roomClient) {
		readers.Go(func() { rc.read(clients) })
	}
	if err := clients[0].join(jctx, roomJID, maxElems); err != nil {
		return time.Since(start), err
	}
	startReader(clients[0])
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	next.Store(1)
	for range min(c.concurrency, len(clients)-1) {
		wg.Go(func() {
			for jctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(clients) {
					return
				}
				if err := clients[i].join(jctx, roomJID, maxElems); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				startReader(clients[i])
			}
		})
	}
	wg.Wait()
	if firstErr == nil && jctx.Err() != nil {
		firstErr = fmt.Errorf("joining: %w", jctx.Err())
	}
	return time.Since(start), firstErr
}

func runRoom(ctx context.Context, c *config, d *dialer, accs []account, log io.Writer) (*result, error) {
	sessions, h, took, failed, err := loginAll(ctx, c, d, accs, true, nil)
	if err != nil {
		closeAll(sessions)
		return nil, fmt.Errorf("%d of %d logins failed; first: %w", failed, len(accs), err)
	}
	r := newResult(c)
	r.setLogins(h, failed, took)
	fmt.Fprintf(log, "xmppload: %d sessions up in %.1fs\n", h.n, took.Seconds())
	return r, roomRun(ctx, c, sessions, r, log)
}

// roomRun joins the logged-in sessions to the room, sends, and fills r.
func roomRun(ctx context.Context, c *config, sessions []*session, r *result, log io.Writer) error {
	clients := make([]*roomClient, len(sessions))
	for i, s := range sessions {
		clients[i] = &roomClient{s: s, idx: i, nick: "u" + strconv.Itoa(i), wake: make(chan struct{}, 1)}
	}
	var readers sync.WaitGroup
	joinTook, err := joinAll(ctx, c, clients, &readers)
	if err != nil {
		closeAll(sessions)
		readers.Wait()
		return err
	}
	fmt.Fprintf(log, "xmppload: all in %s in %.1fs; %d messages each, for at most %s\n",
		c.roomJID(), joinTook.Seconds(), c.messages, c.duration)

	m := &serverMeter{pid: c.pid}
	cpu0, self0 := m.read(), selfCPUTicks()
	start := time.Now()
	stopAt := start.Add(c.duration)
	hardEnd := stopAt.Add(c.drain + 10*time.Second)
	var senders sync.WaitGroup
	for _, rc := range clients {
		rc.s.conn.SetDeadline(hardEnd)
		senders.Go(func() { rc.send(ctx, c, len(clients), start, stopAt) })
	}
	senders.Wait()
	sendEnd := time.Now()
	n := int64(len(clients))
	// Wait for what is in flight, at most --drain: every occupant gets
	// every message that did not bounce.
	var sent, want, got int64
	drainEnd := sendEnd.Add(c.drain)
	for {
		sent, want, got = 0, 0, 0
		for _, rc := range clients {
			s, b := rc.sent.Load(), rc.bounced.Load()
			sent += s
			want += n * (s - b)
			got += rc.rx.Load()
		}
		if got >= want || time.Now().After(drainEnd) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu1, self1 := m.read(), selfCPUTicks()
	closeAll(sessions)
	readers.Wait()

	r.Size, r.Window, r.TargetRate, r.Room, r.MessagesEach = c.size, c.window, c.rate, c.roomJID(), c.messages
	var lat hist
	var last int64
	for _, rc := range clients {
		r.Sent += rc.sent.Load()
		r.Received += rc.rx.Load()
		r.Duplicates += rc.dup.Load()
		r.Errors += rc.bounced.Load()
		lat.merge(&rc.lat)
		last = max(last, rc.lastRx.Load())
	}
	r.Lost = n*(r.Sent-r.Errors) - r.Received
	r.Seconds = sendEnd.Sub(start).Seconds()
	span := r.Seconds
	if last > 0 {
		span = max(span, time.Unix(0, last).Sub(start).Seconds())
	}
	r.SentPerSec = float64(r.Sent) / span
	r.MsgsPerSec = float64(r.Received) / span
	r.LatP50ms = float64(lat.quantile(0.50)) / 1000
	r.LatP90ms = float64(lat.quantile(0.90)) / 1000
	r.LatP99ms = float64(lat.quantile(0.99)) / 1000
	r.LatMaxms = float64(lat.max) / 1000
	r.ServerCPUPerMsgUs = r.setCPU(m, cpu0, cpu1, self1-self0, r.Received)
	var rerr error
	if r.Lost != 0 {
		rerr = fmt.Errorf("%d deliveries lost", r.Lost)
	}
	for _, rc := range clients {
		if rc.readErr != nil {
			rerr = errors.Join(rerr, rc.readErr)
			break
		}
	}
	return errors.Join(rerr, m.err)
}

// send writes c.messages groupchat messages until stopAt: paced at
// c.rate/n per sender, or as fast as the window (own messages not yet
// reflected) allows.
func (rc *roomClient) send(ctx context.Context, c *config, n int, start, stopAt time.Time) {
	w := bufio.NewWriterSize(rc.s.conn, 32<<10)
	defer w.Flush()
	p := newPacer(c, w, rc.wake, rc.idx, n, start, stopAt)
	roomJID := c.roomJID()
	buf := make([]byte, 0, c.size+256)
	for k := int64(0); k < int64(c.messages); k++ {
		now, ok := p.wait(ctx, func() int64 { return k - rc.echoed.Load() - rc.bounced.Load() })
		if !ok {
			return
		}
		buf = appendTyped(buf[:0], "groupchat", roomJID, uint64(k)*uint64(n)+uint64(rc.idx), now.UnixNano(), c.size)
		if _, err := w.Write(buf); err != nil {
			return
		}
		rc.sent.Store(k + 1)
	}
}

// read counts the room's messages in the raw stream until the connection
// closes: any sender's (by SEQ mod clients), its own reflections, and its
// bounces.
func (rc *roomClient) read(clients []*roomClient) {
	var set seqSet
	n := uint64(len(clients))
	rc.readErr = scanStream(rc.s.r, func(m seen, nowNano int64) {
		if m.isError {
			rc.bounced.Add(1)
			return
		}
		if !set.add(m.seq) {
			rc.dup.Add(1)
			return
		}
		rc.rx.Add(1)
		if m.seq%n == uint64(rc.idx) {
			rc.echoed.Add(1)
		}
		rc.lat.addSince(m.sentAt, nowNano)
	}, func(nowNano int64) {
		rc.lastRx.Store(nowNano)
		poke(rc.wake)
	})
}
